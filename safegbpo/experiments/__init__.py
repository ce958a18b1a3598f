"""Experiments: training runs and the paper's reproduction.

Training (one configuration): :mod:`safegbpo.experiments.config` (:class:`TrainConfig`, the
SPEC §8 presets), :mod:`safegbpo.experiments.runner` (:func:`train`: run / checkpoint /
resume; :func:`train_population`: several seeds of one configuration in one process),
:mod:`safegbpo.experiments.io` (atomic writes), :mod:`safegbpo.experiments.cli`
(``safegbpo train``).  Reproduction (grids of runs, metrics, tables) lives in the other modules
of this package.  Submodules are imported on demand so ``import safegbpo.experiments`` stays
cheap.
"""
