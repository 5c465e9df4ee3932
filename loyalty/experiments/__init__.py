"""A/B experiments on the program's earning rules, automations and benefits.

The pure core (``assignment``: deterministic arms; ``statistics``: results), the
definition (``definitions``), its storage (``models``), the admin use cases (``services``:
create, change a draft, start, stop, end at its window's end, get, list; each audited, start
and stop announced by webhook events), who gets which arm and the record of their first
exposure (``exposure``), and what is concluded about an experiment, written on it
(``verdicts``: the sample-ratio flag, the promoted arm). The use cases that compute
results, end and flag experiments in the jobs, and promote an arm are in
``loyalty.conclusions``, above the orders, rules and automations they read and change; the
admin API in ``loyalty.api.experiments``, the console's pages in
``loyalty.console.experiments``.
"""
