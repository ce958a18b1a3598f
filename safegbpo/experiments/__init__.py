"""Experiments: training runs, and a reproduction's chain runs -> records -> measured cells.

Training (one configuration): :mod:`~safegbpo.experiments.config` (:class:`TrainConfig`;
presets from the task registry), :mod:`~safegbpo.experiments.runner` (:func:`train`: run /
checkpoint / resume; :func:`train_population`: several seeds of one configuration in one
process).

Reproduction (a grid of runs): :mod:`~safegbpo.experiments.grid` (grid files -> run specs),
:mod:`~safegbpo.experiments.profiles` (``quick``, ``paper``),
:mod:`~safegbpo.experiments.executors` (runs -> records, process pool or Ray) under the
independent :mod:`~safegbpo.experiments.monitor`, :mod:`~safegbpo.experiments.store` (the
results directory), :mod:`~safegbpo.experiments.metrics` (SPEC §9 definitions),
:mod:`~safegbpo.experiments.cells` (records -> measured cells, ``cells.json``),
:mod:`~safegbpo.experiments.checks` (the profile's checks) and
:mod:`~safegbpo.experiments.reproduce` (the pipeline).  The comparison with the paper is the
spec's (``spec.paper``): nothing here imports ``spec``.  Submodules are imported on demand so
``import safegbpo.experiments`` stays cheap.
"""
