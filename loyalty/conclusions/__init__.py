"""What an experiment concludes: its results from orders and the ledger
(``results``), ending experiments whose window passed and flagging a sample-ratio mismatch
(``lifecycle``, run by the jobs), and promoting the winning arm into the program's rules,
automations or tiers (``promotion``).

A use-case layer above orders and automations: it reads orders and the ledger and writes
rules, automations and tiers through their services; the experiment's own rows are written
by ``loyalty.experiments`` (``services``, ``verdicts``), which stays below the rules that ask
it for a member's arm.
"""
