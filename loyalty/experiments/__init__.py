"""A/B experiments (issue 15).

What exists: the pure core (``assignment``: deterministic arms; ``statistics``: results), the
definition (``definitions``), its storage (``models``) and the admin use cases (``services``:
create, change a draft, start, stop, get, list; each audited).

Not yet: exposure recording (nothing writes ``experiment_assignments`` yet), applying arms to
rules, automations and benefits, the results service, the API, webhooks and the console.
"""
