"""The executable specification of safegbpo: it checks and reports, it never trains.

It has two roles, one subpackage each:

* :mod:`spec.checks` — **the safeguard checks** (SPEC §3–§5): the properties P1–P5 as checks on
  any object following the safeguard protocol (:mod:`spec.checks.properties`, evidence from
  :mod:`spec.checks.probe` on the samples of :mod:`spec.checks.sampling`, safety decided by the
  independent scipy LPs of :mod:`spec.checks.oracle`), Lemmas 1–3 (:mod:`spec.checks.lemmas`),
  the paper's Table 1 per registered variant (:mod:`spec.checks.expectations`), the audits
  (:mod:`spec.checks.audit`; ``python -m spec --all``, ``safegbpo audit``) and their records
  (:mod:`spec.checks.results`);
* :mod:`spec.paper` — **the paper comparison** (SPEC §9): the paper's Tables 2–6 as data
  (:mod:`spec.paper.values`, ``paper_tables.json``), the rules that judge our numbers
  (:mod:`spec.paper.rules`), the reference archive (:mod:`spec.paper.archive`), H1/H2
  (:mod:`spec.paper.hypotheses`) and the tables of ours next to the paper's
  (:mod:`spec.paper.tables`).

:mod:`spec.report` (with :mod:`spec.figures`, :mod:`spec.metadata`) writes the compliance report
from both; :mod:`spec.cli` holds the ``safegbpo audit`` / ``safegbpo report`` commands (plugged
into the ``safegbpo`` command through the ``safegbpo.commands`` entry-point group) and
``python -m spec``.  ``spec`` imports ``safegbpo``; ``safegbpo`` never imports ``spec``.
"""

from spec.checks.results import AuditResult, CheckResult

__all__ = ["AuditResult", "CheckResult"]
