"""The paper comparison (SPEC §9): the paper's values, the rules, the archive, H1/H2.

* :mod:`spec.paper.values` — the paper's Tables 2–6 as data (``paper_tables.json``) and the
  comparison's layout;
* :mod:`spec.paper.rules` — the tolerances that decide whether a number of ours reproduces the
  paper's, each justified;
* :mod:`spec.paper.archive` — the reference implementation's archived curves and timings;
* :mod:`spec.paper.hypotheses` — H1 and H2;
* :mod:`spec.paper.tables` — our measured cells (``cells.json`` of ``safegbpo reproduce``) next
  to the paper's and the archive's, with deltas and verdicts: computed once, here.
"""
