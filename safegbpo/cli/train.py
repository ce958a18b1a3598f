"""``safegbpo train``: train one configuration into an output directory (resumable).

Examples::

    safegbpo train --task pendulum --algo shac --safeguard rm --mapping hyperbolic \\
        --regularisation 0.1 --seed 0 --interactions 100000 --out runs/pendulum-shac-hrm-reg
    safegbpo train --task quadrotor --algo shac --seeds 0-9 --out runs/quadrotor-shac
    safegbpo train --task energy --env-option profiles=reference --out runs/energy-shac

Every option maps onto a field of :class:`~safegbpo.experiments.config.TrainConfig`; the
configuration is validated before any work starts (a ``ValueError`` -> exit code 2 with the
message).  ``--seeds`` (``0-9``, ``0,2,5``, ``0-3,7``) trains those seeds as one population in
this process (:func:`~safegbpo.experiments.runner.train_population`) into ``--out/seed-<s>/``,
one run directory per seed in the single-seed format.  Starting the same command again resumes
an interrupted run from its last checkpoint, or returns at once if it finished.  The command
prints one JSON summary line per seed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from safegbpo.algorithms import algorithm_names
from safegbpo.algorithms.evaluation import PAPER_SEED
from safegbpo.cli.options import (
    add_backend_option,
    add_env_option_option,
    add_safe_set_option,
    add_task_option,
    parse_key_values,
)
from safegbpo.experiments.config import TrainConfig, parse_hyper_assignment
from safegbpo.safeguards import DEFAULT_BACKEND, SAFEGUARDS

__all__ = ["register", "config_from_args", "parse_seeds", "seed_dir"]


def parse_seeds(text: str) -> list[int]:
    """``'0-9'``, ``'0,2,5'``, ``'0-3,7'`` -> the seeds, in the given order (``ValueError``
    naming the problem for empty items, negative or descending ranges, duplicates)."""
    seeds: list[int] = []
    for item in str(text).split(","):
        item = item.strip()
        if not item:
            raise ValueError(f"--seeds {text!r}: empty item (expected e.g. 0-9 or 0,2,5)")
        first, dash, last = item.partition("-")
        try:
            start = int(first)
            stop = int(last) if dash else start
        except ValueError:
            raise ValueError(f"--seeds {text!r}: {item!r} is not a seed or a range a-b") from None
        if start < 0 or stop < start:
            raise ValueError(f"--seeds {text!r}: {item!r} must be a non-negative seed or an "
                             "ascending range a-b")
        seeds.extend(range(start, stop + 1))
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds {text!r}: duplicate seeds")
    return seeds


def seed_dir(out: str | Path, seed: int) -> Path:
    """Run directory of ``seed`` inside a population's ``--out``: ``<out>/seed-<seed>``."""
    return Path(out) / f"seed-{seed}"


def register(subparsers: Any) -> None:
    """Add the ``train`` subcommand to ``safegbpo``'s subparsers."""
    parser = subparsers.add_parser(
        "train",
        help="train one configuration (SHAC/PPO/SAC, optional safeguard) into --out; "
        "--seeds trains several seeds as one population",
        description="Train one configuration and write result.json, checkpoint.pt and "
        "policy.pt into --out (with --seeds: into --out/seed-<s>/ for every seed, trained "
        "together in this process). Rerunning the same command resumes or returns the "
        "finished result.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_task_option(parser)
    parser.add_argument("--algo", default="shac", metavar="ALGO",
                        help=f"one of {', '.join(algorithm_names())} (the algorithm registry)")
    parser.add_argument("--safeguard", default="none",
                        help=f"none | {' | '.join(SAFEGUARDS)} | package.module:Class "
                        "(bp: boundary projection, rm: ray mask)")
    parser.add_argument("--mapping", default=None,
                        help="ray mask mapping: linear | hyperbolic (default linear)")
    parser.add_argument("--centre", default=None,
                        help="ray mask centre: zonotopic | orthogonal (default zonotopic)")
    parser.add_argument("--passthrough", action="store_true",
                        help="straight-through (identity) gradient of the safeguard")
    parser.add_argument("--regularisation", type=float, default=0.0,
                        help="Eq 45 coefficient lambda_reg (the paper uses 0.1)")
    add_backend_option(parser, default=DEFAULT_BACKEND)
    seeds = parser.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=int, default=0, help="run seed")
    seeds.add_argument("--seeds", default=None, metavar="LIST",
                       help="train several seeds as one population in this process, e.g. 0-9 "
                       "or 0,2,5; --out then holds one run directory per seed (seed-<s>/)")
    parser.add_argument("--interactions", type=int, default=None,
                        help="budget in env interactions (default: the task's budget)")
    parser.add_argument("--eval-every", type=int, default=None,
                        help="evaluation interval in interactions (default: the paper's grid)")
    parser.add_argument("--eval-episodes", type=int, default=None,
                        help="episodes of the second evaluation, from a fixed seeded set of "
                        "initial states (default 16)")
    parser.add_argument("--eval-seed", type=int, default=PAPER_SEED,
                        help="seed of the paper evaluation's one initial state (SPEC §13; "
                        "shared by all runs)")
    parser.add_argument("--episode-length", type=int, default=None,
                        help="steps per episode, training and evaluation (default: the task's "
                        "registry entry)")
    parser.add_argument("--num-envs", type=int, default=None,
                        help="training environments (default: the task's)")
    add_safe_set_option(parser)
    add_env_option_option(parser)
    parser.add_argument("--hyper", action="append", default=[], metavar="KEY=VALUE",
                        help="override one hyper-parameter of the preset, e.g. "
                        "--hyper policy_lr=1e-3 --hyper policy_hidden=64,64 (repeatable)")
    parser.add_argument("--device", default="cpu", help="torch device")
    parser.add_argument("--out", required=True,
                        help="output directory of the run (with --seeds: of the population, "
                        "one seed-<s>/ per seed)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def config_from_args(args: argparse.Namespace, seed: int | None = None) -> TrainConfig:
    """The validated :class:`TrainConfig` of parsed ``train`` arguments (``seed`` overrides
    ``--seed``: one member of ``--seeds``)."""
    hyper = dict(parse_hyper_assignment(item) for item in args.hyper) or None
    config = TrainConfig(
        task=args.task, algo=args.algo, safeguard=args.safeguard, mapping=args.mapping,
        centre=args.centre, passthrough=args.passthrough, regularisation=args.regularisation,
        backend=args.backend, seed=args.seed if seed is None else seed,
        interactions=args.interactions, eval_every=args.eval_every,
        eval_episodes=args.eval_episodes, num_envs=args.num_envs, eval_seed=args.eval_seed,
        episode_length=args.episode_length, safe_set=args.safe_set,
        env_options=parse_key_values(args.env_option, "--env-option"), hyper=hyper,
        device=args.device)
    return config.validate()


def run(args: argparse.Namespace) -> int:
    """Entry point of ``safegbpo train`` (returns the exit code)."""
    from safegbpo.experiments.runner import train_population

    if args.seeds is None:
        configs, outs = [config_from_args(args)], [Path(args.out)]
    else:
        seeds = parse_seeds(args.seeds)
        configs = [config_from_args(args, seed) for seed in seeds]
        outs = [seed_dir(args.out, seed) for seed in seeds]
    results = train_population(configs, outs, progress=not args.no_progress)
    for config, out, result in zip(configs, outs, results, strict=True):
        final = result["curve"][-1] if result["curve"] else None
        print(json.dumps({
            "out": str(out),
            "seed": config.seed,
            "status": result["status"],
            "interactions": result["interactions"],
            "final_reward": None if final is None else final["reward"],
            "interventions": result["interventions"],
            "fallbacks": result["fallbacks"],
            "wallclock_total": result["wallclock"].get("total"),
            **({"data_sources": result["data_sources"]} if result.get("data_sources") else {}),
        }))
    return 0
