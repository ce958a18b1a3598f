"""Learning algorithms (SPEC §8): SHAC (analytic gradients through the simulator and the
safeguard), PPO and SAC (safeguard as a post-processing step), with their networks, replay
buffer and evaluation (SPEC §13 protocol).

Every algorithm trains a *population* of independent seeds in lockstep in one process
(:mod:`safegbpo.algorithms.population`); a single-seed run is a population of one.  Each
algorithm reads top to bottom in its own module, with its hyper-parameters in one frozen
dataclass (:class:`SHACConfig`, :class:`PPOConfig`, :class:`SACConfig`); the tuned presets per
task are in :mod:`safegbpo.experiments.config`.
"""

from safegbpo.algorithms.base import Algorithm, PhaseTimer, derive_seed, make_generator
from safegbpo.algorithms.buffers import ReplayBuffer
from safegbpo.algorithms.evaluation import EvaluationResult, Evaluator
from safegbpo.algorithms.networks import MLP, GaussianPolicy, QCritic, ValueCritic
from safegbpo.algorithms.population import (
    merge_population_states,
    population_env,
    split_population_state,
)
from safegbpo.algorithms.ppo import PPO, PPOConfig
from safegbpo.algorithms.sac import SAC, SACConfig
from safegbpo.algorithms.shac import SHAC, SHACConfig

__all__ = [
    "ALGORITHMS",
    "HYPER_CONFIGS",
    "MLP",
    "PPO",
    "SAC",
    "SHAC",
    "Algorithm",
    "EvaluationResult",
    "Evaluator",
    "GaussianPolicy",
    "PPOConfig",
    "PhaseTimer",
    "QCritic",
    "ReplayBuffer",
    "SACConfig",
    "SHACConfig",
    "ValueCritic",
    "derive_seed",
    "make_generator",
    "merge_population_states",
    "population_env",
    "split_population_state",
]

#: Algorithm classes by name (``TrainConfig.algo``).
ALGORITHMS: dict[str, type[Algorithm]] = {"shac": SHAC, "ppo": PPO, "sac": SAC}

#: Hyper-parameter dataclass of each algorithm.
HYPER_CONFIGS: dict[str, type] = {"shac": SHACConfig, "ppo": PPOConfig, "sac": SACConfig}
