"""safegbpo: provably safe reinforcement learning from analytic gradients.

Subpackages: :mod:`safegbpo.sets` (zonotopes, containment), :mod:`safegbpo.envs`
(differentiable vectorised tasks), :mod:`safegbpo.safesets` (RCI sets, set files),
:mod:`safegbpo.safeguards` (boundary projection, ray mask), :mod:`safegbpo.algorithms`
(SHAC, PPO, SAC), :mod:`safegbpo.experiments` (configs, runner, metrics, results store).
"""

__version__ = "0.1.0"
