"""``safegbpo train``: train one configuration into an output directory (resumable).

Example::

    safegbpo train --task pendulum --algo shac --safeguard rm --mapping hyperbolic \\
        --regularisation 0.1 --seed 0 --interactions 100000 --out runs/pendulum-shac-hrm-reg

Every option maps onto a field of :class:`~safegbpo.experiments.config.TrainConfig`; the
configuration is validated before any work starts (a ``ValueError`` -> exit code 2 with the
message).  Starting the same command again resumes an interrupted run from its last
checkpoint, or returns at once if it finished.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from safegbpo.experiments.config import TrainConfig, parse_hyper_assignment

__all__ = ["register", "config_from_args"]


def register(subparsers: Any) -> None:
    """Add the ``train`` subcommand to ``safegbpo``'s subparsers."""
    parser = subparsers.add_parser(
        "train",
        help="train one configuration (SHAC/PPO/SAC, optional safeguard) into --out",
        description="Train one configuration and write result.json, checkpoint.pt and "
        "policy.pt into --out. Rerunning the same command resumes or returns the finished "
        "result.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--task", required=True, help="pendulum | quadrotor | energy")
    parser.add_argument("--algo", default="shac", help="shac | ppo | sac")
    parser.add_argument("--safeguard", default="none",
                        help="none | bp (boundary projection) | rm (ray mask) | "
                        "package.module:Class")
    parser.add_argument("--mapping", default=None,
                        help="ray mask mapping: linear | hyperbolic (default linear)")
    parser.add_argument("--centre", default=None,
                        help="ray mask centre: zonotopic | orthogonal (default zonotopic)")
    parser.add_argument("--passthrough", action="store_true",
                        help="straight-through (identity) gradient of the safeguard")
    parser.add_argument("--regularisation", type=float, default=0.0,
                        help="Eq 45 coefficient lambda_reg (the paper uses 0.1)")
    parser.add_argument("--seed", type=int, default=0, help="run seed")
    parser.add_argument("--interactions", type=int, default=None,
                        help="budget in env interactions (default: 100000 pendulum, "
                        "200000 quadrotor, 1000000 energy)")
    parser.add_argument("--eval-every", type=int, default=None,
                        help="evaluation interval in interactions (default: the paper's grid)")
    parser.add_argument("--eval-episodes", type=int, default=None,
                        help="episodes of the evaluation set (default: the task's num_envs)")
    parser.add_argument("--eval-seed", type=int, default=0,
                        help="seed of the evaluation set (shared by all runs)")
    parser.add_argument("--num-envs", type=int, default=None,
                        help="training environments (default: the task's)")
    parser.add_argument("--set-file", default=None,
                        help="safe-set file (safegbpo-safe-set/1) instead of the project's set")
    parser.add_argument("--profiles", default=None, metavar="FILE",
                        help="energy task: hourly profile CSV (SPEC §10 format), or 'reference' "
                        "for ../shared/reference/energy_system/profiles.csv (default: the "
                        "project's generated year)")
    parser.add_argument("--hyper", action="append", default=[], metavar="KEY=VALUE",
                        help="override one hyper-parameter of the preset, e.g. "
                        "--hyper policy_lr=1e-3 --hyper policy_hidden=64,64 (repeatable)")
    parser.add_argument("--device", default="cpu", help="torch device")
    parser.add_argument("--out", required=True, help="output directory of the run")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The validated :class:`TrainConfig` of parsed ``train`` arguments."""
    hyper = dict(parse_hyper_assignment(item) for item in args.hyper) or None
    config = TrainConfig(
        task=args.task, algo=args.algo, safeguard=args.safeguard, mapping=args.mapping,
        centre=args.centre, passthrough=args.passthrough, regularisation=args.regularisation,
        seed=args.seed, interactions=args.interactions, eval_every=args.eval_every,
        eval_episodes=args.eval_episodes, num_envs=args.num_envs, eval_seed=args.eval_seed,
        safe_set=args.set_file, profiles=_profiles_path(args.profiles), hyper=hyper,
        device=args.device)
    return config.validate()


def _profiles_path(value: str | None) -> str | None:
    """``--profiles``: a path, or ``'reference'`` -> the ``../shared`` reference file."""
    if value != "reference":
        return value
    from safegbpo.tasks.energy_profiles import reference_profiles_path

    path = reference_profiles_path()
    if path is None:
        raise ValueError("--profiles reference: ../shared/reference/energy_system/profiles.csv "
                         "is not present")
    return str(path)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``safegbpo train`` (returns the exit code)."""
    from safegbpo.experiments.runner import train

    config = config_from_args(args)
    result = train(config, args.out, progress=not args.no_progress)
    final = result["curve"][-1] if result["curve"] else None
    print(json.dumps({
        "out": str(args.out),
        "status": result["status"],
        "interactions": result["interactions"],
        "final_reward": None if final is None else final["reward"],
        "interventions": result["interventions"],
        "fallbacks": result["fallbacks"],
        "wallclock_total": result["wallclock"].get("total"),
    }))
    return 0
