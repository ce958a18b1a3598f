"""The safeguard checks (SPEC §3–§5): properties P1–P5, Lemmas 1–3, audits.

* :mod:`spec.checks.properties` — P1–P5 as checks on any object following the safeguard
  protocol; :mod:`spec.checks.probe` collects the evidence on the states and actions of
  :mod:`spec.checks.sampling`; safety is decided by the independent scipy LPs of
  :mod:`spec.checks.oracle` (never by the safeguards' own solvers);
* :mod:`spec.checks.lemmas` — Lemmas 1–3;
* :mod:`spec.checks.expectations` — the paper's Table 1 per registered variant;
* :mod:`spec.checks.audit` — one safeguard on one task, or everything (``python -m spec``);
* :mod:`spec.checks.results` — the result records; :mod:`spec.checks.console` — rich tables.
"""
