"""The automation form's member attributes, typed as `key = value` lines: what is shown for
stored metadata conditions reads back as the same values."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from loyalty.console.automation_forms import attributes_text, parse_attributes

# Keys as the form can take them: no "=" (it splits there), no line break, not padded.
KEYS = st.text(min_size=1, max_size=20).filter(
    lambda key: "=" not in key and key == key.strip() and not set(key) & {"\n", "\r"}
)
VALUES = st.one_of(st.text(max_size=20), st.integers(), st.booleans())


@given(st.dictionaries(KEYS, VALUES, max_size=5))
def test_shown_attributes_read_back_as_the_same_values(metadata):
    assert parse_attributes(attributes_text(metadata)) == (metadata, [])


def test_true_false_and_integers_are_read_as_such_and_quotes_make_text():
    text = 'vip = true\nlapsed = false\norders = 12\ncode = "12"\nplan = gold plus\nmood = "true"'

    assert parse_attributes(text) == (
        {
            "vip": True,
            "lapsed": False,
            "orders": 12,
            "code": "12",
            "plan": "gold plus",
            "mood": "true",
        },
        [],
    )


def test_a_line_without_a_key_and_value_is_named():
    assert parse_attributes("vip = true\n\njust words\n= 3") == (
        {"vip": True},
        ["Line 3: write key = value.", "Line 4: write key = value."],
    )


def test_text_that_would_read_as_something_else_is_shown_quoted():
    assert attributes_text({"a": "12", "b": "true", "c": " x", "d": "gold"}) == (
        'a = "12"\nb = "true"\nc = " x"\nd = gold'
    )
