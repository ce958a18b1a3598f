"""The executable specification of safegbpo (SPEC §3–§5, §9).

* :mod:`spec.properties` — the safeguard properties P1–P5 as checks on any object following
  the safeguard protocol; :mod:`spec.probe` collects the evidence on the states and actions of
  :mod:`spec.sampling`; safety is decided by the independent scipy LPs of :mod:`spec.oracle`;
* :mod:`spec.lemmas` — Lemmas 1–3; :mod:`spec.expectations` — the paper's Table 1 per built-in
  safeguard; :mod:`spec.results` — the result records;
* :mod:`spec.audit` — one safeguard on one task, or everything (``python -m spec --all``);
  :mod:`spec.console` — the rich tables;
* ``spec/paper_tables.json``, :mod:`spec.tables` — the paper's Tables 2–6 and the comparison
  rules; :mod:`spec.hypotheses` — H1/H2;
* :mod:`spec.report` (with :mod:`spec.figures`, :mod:`spec.metadata`) — the compliance report;
  :mod:`spec.cli` — ``safegbpo audit`` and ``safegbpo report``.
"""

from spec.results import AuditResult, CheckResult

__all__ = ["AuditResult", "CheckResult"]
