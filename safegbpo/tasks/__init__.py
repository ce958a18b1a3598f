"""Task models beyond the paper's two (SPEC §10): the household energy system.

* :mod:`safegbpo.tasks.energy` -- :class:`~safegbpo.tasks.energy.EnergyModel`, the pure, batched,
  differentiable model (registered as ``"energy"`` in :data:`safegbpo.envs.models.MODELS`);
* :mod:`safegbpo.tasks.energy_profiles` -- the exogenous hourly data (CSV loader, generated year).

Import order: the energy model subclasses :class:`safegbpo.envs.models.TaskModel` and
:mod:`safegbpo.envs.models` registers the energy model, so this package imports
:mod:`safegbpo.envs.models` first; that makes ``import safegbpo.tasks.energy`` work whether or
not :mod:`safegbpo.envs` was imported before.
"""

import safegbpo.envs.models  # noqa: F401  (see the module docstring: import order)
