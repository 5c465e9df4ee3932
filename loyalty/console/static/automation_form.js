// The automation form shows only the chosen trigger kind's parameter fields. Without this
// script every parameter field shows (each says which kinds take it) and the server reads
// only the chosen kind's, so the form works the same either way. Hidden fields keep what
// was typed in them: switching back shows it again.
(function () {
  "use strict";
  var kind = document.getElementById("kind");
  if (!kind) {
    return;
  }
  function showChosenKind() {
    document.querySelectorAll("#trigger [data-kinds]").forEach(function (parameter) {
      parameter.hidden = parameter.getAttribute("data-kinds").split(" ").indexOf(kind.value) < 0;
    });
  }
  kind.addEventListener("change", showChosenKind);
  showChosenKind();
})();
