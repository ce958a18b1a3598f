"""The experiment grid behind the paper's Tables 2-6, declared as data and expanded into runs.

A grid file (``safegbpo/experiments/grids/<name>.json``, format ``safegbpo-grid/1``) declares

* ``seeds`` and optional ``budgets`` (per task: ``interactions``, per-algorithm ``eval_every``
  and optionally ``episode_length``: SPEC §13); what a grid does not override is the task's
  registry entry (SPEC §8, :class:`safegbpo.tasks.TaskSpec`);
* ``backend`` (optional, default ``'exact'``): the safeguard backend of the safeguarded runs
  (:data:`safegbpo.safeguards.BACKENDS`: the exact H-representation of SPEC §11 or the paper's
  Eq 6 programs through cvxpylayers);
* ``experiments``: blocks ``tasks x algos x variants x seeds`` that feed named ``tables``; a block
  may override ``seeds``, ``budgets``, ``backend`` and per-algorithm ``hyper``-parameters.
  Tasks, algorithms and variants are names of the registries (:func:`safegbpo.tasks.get_task`,
  :func:`safegbpo.algorithms.get_algorithm`, :func:`safegbpo.safeguards.variants.get_variant`:
  a variant by key or report label);
* ``wallclock`` (optional): the Table 6 timing runs (``interactions`` of one task per algorithm
  and variant, one seed, optional ``hyper`` overrides, ``backends``: the list of safeguard
  backends to time, default the grid's ``backend``; one unsafe baseline per algorithm serves
  them all; what the paper timed is the spec's);
* ``checks`` (optional): profile checks evaluated after the runs (:mod:`.checks`).

:func:`expand` turns a grid into :class:`RunSpec` s -- one per distinct training run.  A run's id
is a readable name plus a hash of everything that determines its result (task, algorithm,
variant fields, the safeguard backend of a safeguarded run, seed, budget, episode length,
evaluation grid, hyper-parameter overrides, the safe-set file's content and -- only when given --
the task's env options, with the content of a file-valued option such as the energy task's
profiles in place of its path), so identical runs requested by two experiments (e.g. SHAC + BP
in Tables 3 and 4) run once and feed both, and changing anything (e.g. ``--safe-sets``) gives
new ids instead of mixing results (records of one backend are never reused for another).  The
readable part of the id names the backend when it is not the default
(``pendulum-shac-bp-cvxpylayers-s0-...``).

:func:`group_populations` groups training runs that differ only in their seed into *population
tasks* (:func:`safegbpo.experiments.runner.train_population`: the seeds of one configuration
trained together in one process, one batched safeguard call with the runs' backend); the
executors schedule those tasks.  A seed's result does not depend on the population it is
trained in, so grouping changes wall clocks, never records.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from safegbpo.algorithms import algorithm_names, get_algorithm
from safegbpo.safeguards import BACKENDS, DEFAULT_BACKEND
from safegbpo.safeguards.variants import TRAIN_FIELDS, UNSAFE, get_variant, variant_names
from safegbpo.tasks import get_task, task_names

__all__ = [
    "GRID_FORMAT",
    "Grid",
    "RunSpec",
    "expand",
    "file_sha256",
    "grid_path",
    "group_populations",
    "load_grid",
    "runs_by_cell",
]

GRID_FORMAT = "safegbpo-grid/1"
_KINDS = ("train", "wallclock")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes (identifies a safe-set file in run ids and reports)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# --------------------------------------------------------------------------------------------
# run specification
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunSpec:
    """One training run of the grid (JSON-serialisable, picklable for worker processes).

    Attributes:
        task, algo, variant, seed: the cell coordinates (``variant`` is the variant's report
            label, SPEC §5).
        variant_fields: the ``TrainConfig`` fields of the variant (safeguard, mapping, ...;
            :attr:`safegbpo.safeguards.variants.Variant.train_fields`), so a worker process
            needs no registry lookup to build the run.
        interactions: training budget (environment interactions, one env step = one).
        eval_every: evaluation interval (interactions).
        eval_episodes: evaluation episodes (``None``: the runner's default).
        episode_length: steps per episode (``None``: the task's, SPEC §13).
        hyper: overrides of the algorithm's hyper-parameter preset (empty: the paper's).
        kind: ``'train'`` (learning curve) or ``'wallclock'`` (Table 6 timing run).
        backend: the safeguard backend (``'exact'``, ``'cvxpylayers'``) of a safeguarded run
            (``None``: the default, :data:`~safegbpo.safeguards.DEFAULT_BACKEND`); always
            ``None`` for a run without safeguard, which no backend changes.
        safe_set: path of the task's safe-set file, ``None`` for the project's own set.
        safe_set_sha256: content hash of ``safe_set`` (part of the run id).
        env_options: options of the task's environment over its registry defaults, in the
            canonical form of :meth:`safegbpo.envs.SafeVectorEnv.resolve_options` (e.g. the
            energy task's ``profiles``: an absolute CSV path); empty: the defaults.
        env_options_sha256: content hash of every option whose value is a file (part of the
            run id instead of the path).
        experiments, tables: which grid blocks / tables this run feeds (not part of the id).
    """

    task: str
    algo: str
    variant: str
    seed: int
    variant_fields: Mapping[str, Any]
    interactions: int
    eval_every: int
    eval_episodes: int | None = None
    episode_length: int | None = None
    hyper: Mapping[str, Any] = field(default_factory=dict)
    kind: str = "train"
    backend: str | None = None
    safe_set: str | None = None
    safe_set_sha256: str | None = None
    experiments: tuple[str, ...] = ()
    tables: tuple[str, ...] = ()
    env_options: Mapping[str, Any] = field(default_factory=dict)
    env_options_sha256: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        spec = get_task(self.task)
        get_algorithm(self.algo)
        if self.kind not in _KINDS:
            raise ValueError(f"unknown run kind {self.kind!r}; expected one of {_KINDS}")
        unknown = set(self.variant_fields) - TRAIN_FIELDS
        if unknown:
            raise ValueError(f"variant {self.variant!r} sets unknown fields {sorted(unknown)}")
        if not self.safeguarded:
            object.__setattr__(self, "backend", None)
        elif self.backend is None:
            object.__setattr__(self, "backend", DEFAULT_BACKEND)
        elif self.backend not in BACKENDS:
            raise ValueError(f"unknown safeguard backend {self.backend!r}; expected one of "
                             f"{list(BACKENDS)}")
        for name in ("interactions", "eval_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.eval_episodes is not None and (
            isinstance(self.eval_episodes, bool)
            or not isinstance(self.eval_episodes, int)
            or self.eval_episodes <= 0
        ):
            raise ValueError(
                f"eval_episodes must be a positive integer, got {self.eval_episodes!r}"
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        if (self.safe_set is None) != (self.safe_set_sha256 is None):
            raise ValueError("safe_set and safe_set_sha256 must be given together")
        spec.check_env_option_names(self.env_options)
        stray = sorted(set(self.env_options_sha256) - set(self.env_options))
        if stray:
            raise ValueError(f"env_options_sha256 names options that are not set: {stray}")

    @property
    def safeguarded(self) -> bool:
        """The run trains through a safeguard (its variant names one)."""
        return self.variant_fields.get("safeguard") is not None

    # -- identity ----------------------------------------------------------------------------
    def identity(self) -> dict[str, Any]:
        """Everything that determines the run's result (hashed into :attr:`run_id`); the
        backend only for a safeguarded run (an unsafe run is the same for every backend)."""
        identity = {
            "task": self.task,
            "algo": self.algo,
            "variant": dict(self.variant_fields),
            "seed": self.seed,
            "interactions": self.interactions,
            "eval_every": self.eval_every,
            "eval_episodes": self.eval_episodes,
            # new with the SPEC §13 protocol: its presence also keeps ids of earlier results apart
            "episode_length": self.episode_length,
            "hyper": dict(self.hyper),
            "kind": self.kind,
            "safe_set_sha256": self.safe_set_sha256,
            # only when set, so the ids of runs with the defaults do not depend on the mechanism
            **({"env_options": {k: self.env_options_sha256.get(k, v)
                                for k, v in self.env_options.items()}}
               if self.env_options else {}),
        }
        if self.backend is not None:
            identity["backend"] = self.backend
        return identity

    @property
    def digest(self) -> str:
        return hashlib.sha256(_canonical(self.identity()).encode()).hexdigest()[:10]

    @property
    def run_id(self) -> str:
        """``<task>-<algo>-<variant>[-<backend>]-s<seed>[-wallclock]-<hash>``, stable across
        sessions (the backend is spelled out when it is not the default)."""
        kind = "-wallclock" if self.kind == "wallclock" else ""
        backend = f"-{self.backend}" if self.backend not in (None, DEFAULT_BACKEND) else ""
        return (f"{self.task}-{self.algo}-{_slug(self.variant)}{backend}-s{self.seed}{kind}-"
                f"{self.digest}")

    @property
    def cell(self) -> tuple[str, str, str]:
        return (self.task, self.algo, self.variant)

    @property
    def population_key(self) -> str:
        """What the runs of one population share: the identity without the seed (task,
        algorithm, variant, backend, budget, episode length, evaluation, hyper-parameters,
        safe-set content, env options), and the paths behind the hashed files -- the safe-set
        file and file-valued env options (``train_population`` needs configurations equal
        except for ``seed``)."""
        shared = {k: v for k, v in self.identity().items() if k != "seed"}
        return _canonical({**shared, "variant_label": self.variant, "safe_set": self.safe_set,
                           "env_option_values": dict(self.env_options)})

    # -- conversion --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "task": self.task,
            "algo": self.algo,
            "variant": self.variant,
            "seed": self.seed,
            "variant_fields": dict(self.variant_fields),
            "interactions": self.interactions,
            "eval_every": self.eval_every,
            "eval_episodes": self.eval_episodes,
            "episode_length": self.episode_length,
            "hyper": dict(self.hyper),
            "kind": self.kind,
            "backend": self.backend,
            "safe_set": self.safe_set,
            "safe_set_sha256": self.safe_set_sha256,
            "experiments": list(self.experiments),
            "tables": list(self.tables),
            "env_options": dict(self.env_options),
            "env_options_sha256": dict(self.env_options_sha256),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunSpec:
        fields = dict(data)
        run_id = fields.pop("run_id", None)
        fields["experiments"] = tuple(fields.get("experiments", ()))
        fields["tables"] = tuple(fields.get("tables", ()))
        spec = cls(**fields)
        if run_id is not None and run_id != spec.run_id:
            raise ValueError(f"run id {run_id!r} does not match the spec's content ({spec.run_id})")
        return spec

    def train_config_fields(self, device: str = "cpu") -> dict[str, Any]:
        """The keyword arguments of ``TrainConfig`` for this run (SPEC §8 presets + overrides)."""
        out: dict[str, Any] = {
            "task": self.task,
            "algo": self.algo,
            "seed": self.seed,
            "interactions": self.interactions,
            "eval_every": self.eval_every,
            "device": device,
        }
        out.update(self.variant_fields)
        if self.backend is not None:
            out["backend"] = self.backend
        if self.eval_episodes is not None:
            out["eval_episodes"] = self.eval_episodes
        if self.episode_length is not None:
            out["episode_length"] = self.episode_length
        if self.hyper:
            out["hyper"] = dict(self.hyper)
        if self.safe_set is not None:
            out["safe_set"] = self.safe_set
        if self.env_options:
            out["env_options"] = dict(self.env_options)
        return out

    def train_config(self, device: str = "cpu") -> Any:
        """This run as a validated ``safegbpo.experiments.config.TrainConfig``."""
        from safegbpo.experiments.config import TrainConfig

        config = TrainConfig.from_dict(self.train_config_fields(device))
        config.validate()
        return config


# --------------------------------------------------------------------------------------------
# grid files
# --------------------------------------------------------------------------------------------
def grid_path(name: str) -> Path:
    """Path of a packaged grid file (``'paper'``, ``'quick'``) or of ``name`` itself when it is
    an existing file path."""
    candidate = Path(name)
    if candidate.suffix == ".json" and candidate.is_file():
        return candidate
    packaged = resources.files("safegbpo.experiments") / "grids" / f"{name}.json"
    path = Path(str(packaged))
    if not path.is_file():
        raise ValueError(f"no grid named {name!r} (looked for {path})")
    return path


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: invalid JSON: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object at the top level")
    return data


@dataclass(frozen=True)
class Grid:
    """A parsed grid file (see the module docstring); :func:`expand` gives its runs.

    ``experiments`` and ``wallclock`` name variants by their report labels (resolved from keys
    or labels when the file is loaded); ``backend`` is the grid's safeguard backend (a block's
    ``backend`` overrides it) and ``wallclock['backends']`` the backends Table 6 times."""

    name: str
    description: str
    seeds: tuple[int, ...]
    budgets: Mapping[str, Mapping[str, Any]]
    experiments: tuple[Mapping[str, Any], ...]
    wallclock: Mapping[str, Any] | None = None
    checks: Mapping[str, Any] = field(default_factory=dict)
    eval_episodes: int | None = None
    backend: str = DEFAULT_BACKEND
    source: str = ""

    @property
    def tasks(self) -> list[str]:
        """Every task the grid trains on (experiments, then the timing runs), once each."""
        tasks = [t for e in self.experiments for t in e["tasks"]]
        if self.wallclock:
            tasks.append(self.wallclock["task"])
        return list(dict.fromkeys(tasks))


def _as_seeds(value: Any, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError(f"{where}: 'seeds' must be a non-empty list of integers")
    if any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in value):
        raise ValueError(f"{where}: seeds must be non-negative integers, got {value}")
    if len(set(value)) != len(value):
        raise ValueError(f"{where}: duplicate seeds in {value}")
    return tuple(value)


def _check_names(values: Any, allowed: Iterable[str], what: str, where: str) -> list[str]:
    allowed = tuple(allowed)
    if not isinstance(values, list) or not values:
        raise ValueError(f"{where}: '{what}' must be a non-empty list")
    bad = [v for v in values if v not in allowed]
    if bad:
        raise ValueError(f"{where}: unknown {what} {bad}; expected some of {list(allowed)}")
    return list(values)


def _variant_labels(values: Any, where: str) -> list[str]:
    """Variant keys or labels -> report labels (registry), naming the unknown ones."""
    if not isinstance(values, list) or not values:
        raise ValueError(f"{where}: 'variants' must be a non-empty list")
    labels, bad = [], []
    for name in values:
        try:
            labels.append(get_variant(name).label)
        except (ValueError, TypeError):
            bad.append(name)
    if bad:
        raise ValueError(f"{where}: unknown variants {bad}; registered: {list(variant_names())}")
    return labels


def _check_backend(value: Any, where: str) -> str:
    if value not in BACKENDS:
        raise ValueError(f"{where}: unknown safeguard backend {value!r}; expected one of "
                         f"{list(BACKENDS)}")
    return str(value)


def _check_backends(values: Any, where: str) -> list[str]:
    if not isinstance(values, list) or not values:
        raise ValueError(f"{where}: 'backends' must be a non-empty list of {list(BACKENDS)}")
    if len(set(values)) != len(values):
        raise ValueError(f"{where}: duplicate backends in {values}")
    return [_check_backend(v, where) for v in values]


def _check_budgets(budgets: Any, where: str) -> Mapping[str, Any]:
    if budgets is None:
        return {}
    if not isinstance(budgets, Mapping):
        raise ValueError(f"{where}: 'budgets' must map tasks to interactions and eval_every")
    _check_names(list(budgets), task_names(), "budget tasks", where)
    return budgets


def load_grid(name_or_path: str | Path) -> Grid:
    """Parse and validate a grid file (packaged name or path)."""
    path = grid_path(str(name_or_path))
    data = _read_json(path)
    where = str(path)
    if data.get("format") != GRID_FORMAT:
        raise ValueError(f"{where}: format {data.get('format')!r} is not {GRID_FORMAT!r}")
    if "variants" in data:
        raise ValueError(f"{where}: grids no longer declare 'variants': experiments name "
                         "registered variants (safegbpo.safeguards.variants) by key or label")
    seeds = _as_seeds(data.get("seeds"), where)
    budgets = _check_budgets(data.get("budgets"), where)
    backend = _check_backend(data.get("backend", DEFAULT_BACKEND), where)
    experiments = data.get("experiments")
    if not isinstance(experiments, list) or not experiments:
        raise ValueError(f"{where}: 'experiments' must be a non-empty list")
    names = [e.get("name") for e in experiments]
    if len(set(names)) != len(names) or any(not isinstance(n, str) for n in names):
        raise ValueError(f"{where}: experiments need unique string names, got {names}")
    resolved = []
    for exp in experiments:
        ew = f"{where}: experiment {exp['name']!r}"
        _check_names(exp.get("tasks"), task_names(), "tasks", ew)
        _check_names(exp.get("algos"), algorithm_names(), "algos", ew)
        labels = _variant_labels(exp.get("variants"), ew)
        if "seeds" in exp:
            _as_seeds(exp["seeds"], ew)
        _check_budgets(exp.get("budgets"), ew)
        if "backend" in exp:
            _check_backend(exp["backend"], ew)
        if not isinstance(exp.get("tables", []), list):
            raise ValueError(f"{ew}: 'tables' must be a list of table names")
        resolved.append({**exp, "variants": labels})
    wallclock = data.get("wallclock")
    if wallclock is not None:
        ww = f"{where}: wallclock"
        _check_names([wallclock.get("task")], task_names(), "task", ww)
        _check_names(wallclock.get("algos"), algorithm_names(), "algos", ww)
        wallclock = {**wallclock, "variants": _variant_labels(wallclock.get("variants"), ww),
                     "backends": _check_backends(wallclock.get("backends", [backend]), ww)}
        if UNSAFE.label not in wallclock["variants"]:
            raise ValueError(f"{ww}: ratios need the {UNSAFE.label!r} baseline in 'variants'")
    eval_episodes = data.get("eval_episodes")
    return Grid(
        name=str(data.get("name", path.stem)),
        description=str(data.get("description", "")),
        seeds=seeds,
        budgets=budgets,
        experiments=tuple(resolved),
        wallclock=wallclock,
        checks=data.get("checks", {}),
        eval_episodes=eval_episodes,
        backend=backend,
        source=str(path),
    )


# --------------------------------------------------------------------------------------------
# expansion
# --------------------------------------------------------------------------------------------
def _budget(
    grid: Grid, block: Mapping[str, Any], task: str, algo: str, where: str
) -> tuple[int, int]:
    """Interactions and evaluation interval of ``task``/``algo``: the block's override, else
    the grid's, else the task's registry entry (SPEC §8)."""
    spec = get_task(task)
    grid_level = dict(grid.budgets.get(task, {}))
    override = (block.get("budgets") or {}).get(task, {})
    interactions = override.get("interactions", grid_level.get("interactions", spec.budget))
    eval_every = {**spec.eval_every, **grid_level.get("eval_every", {}),
                  **override.get("eval_every", {})}.get(algo)
    if interactions is None or eval_every is None:
        raise ValueError(f"{where}: no budget (interactions, eval_every) for {task}/{algo}")
    return int(interactions), int(eval_every)


def _episode_length(grid: Grid, block: Mapping[str, Any], task: str) -> int | None:
    override = (block.get("budgets") or {}).get(task, {})
    return override.get("episode_length", grid.budgets.get(task, {}).get("episode_length"))


def expand(
    grid: Grid,
    *,
    safe_sets: Mapping[str, str | None] | None = None,
    include_wallclock: bool = True,
    env_options: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[RunSpec]:
    """All distinct runs of ``grid``, in declaration order (experiments, then wallclock).

    Runs requested by several experiments are merged (their ``experiments`` / ``tables`` tags are
    united).  ``safe_sets`` maps tasks to set files
    (:func:`safegbpo.safesets.resolve_safe_sets`); ``env_options`` maps tasks to options of
    their environments (canonical, :meth:`safegbpo.envs.SafeVectorEnv.resolve_options`; a
    string option naming an existing file enters the run ids by its content).

    Raises:
        ValueError: a table cell would mix runs with different budgets or hyper-parameters.
    """
    safe_sets = dict(safe_sets or {})
    digests = {task: file_sha256(p) for task, p in safe_sets.items() if p is not None}
    options = {task: dict(opts) for task, opts in (env_options or {}).items() if opts}
    for task in options:
        get_task(task)
    option_digests = {task: {k: file_sha256(v) for k, v in opts.items()
                             if isinstance(v, str) and Path(v).is_file()}
                      for task, opts in options.items()}

    def task_options(task: str) -> dict[str, Any]:
        if task not in options:
            return {}
        return {"env_options": options[task], "env_options_sha256": option_digests[task]}

    runs: dict[str, RunSpec] = {}

    def add(spec: RunSpec) -> None:
        existing = runs.get(spec.run_id)
        if existing is None:
            runs[spec.run_id] = spec
            return
        runs[spec.run_id] = replace(
            existing,
            experiments=tuple(dict.fromkeys(existing.experiments + spec.experiments)),
            tables=tuple(dict.fromkeys(existing.tables + spec.tables)),
        )

    for block in grid.experiments:
        where = f"{grid.source}: experiment {block['name']!r}"
        seeds = tuple(block.get("seeds", grid.seeds))
        hyper_by_algo = block.get("hyper") or {}
        backend = block.get("backend", grid.backend)
        for task in block["tasks"]:
            for algo in block["algos"]:
                interactions, eval_every = _budget(grid, block, task, algo, where)
                for variant in block["variants"]:
                    for seed in seeds:
                        add(
                            RunSpec(
                                task=task,
                                algo=algo,
                                variant=variant,
                                seed=seed,
                                variant_fields=get_variant(variant).train_fields,
                                interactions=interactions,
                                eval_every=eval_every,
                                eval_episodes=block.get("eval_episodes", grid.eval_episodes),
                                episode_length=_episode_length(grid, block, task),
                                hyper=dict(hyper_by_algo.get(algo, {})),
                                backend=backend,
                                safe_set=safe_sets.get(task),
                                safe_set_sha256=digests.get(task),
                                experiments=(block["name"],),
                                tables=tuple(block.get("tables", ())),
                                **task_options(task),
                            )
                        )
    if include_wallclock and grid.wallclock is not None:
        wc = grid.wallclock
        task = wc["task"]
        interactions = int(wc["interactions"])
        for algo in wc["algos"]:
            for variant in wc["variants"]:
                # the unsafe baseline is one run for every backend (its id has no backend)
                for backend in wc.get("backends", [grid.backend]):
                    add(
                        RunSpec(
                            task=task,
                            algo=algo,
                            variant=variant,
                            seed=int(wc.get("seed", 0)),
                            variant_fields=get_variant(variant).train_fields,
                            interactions=interactions,
                            # evaluation is not part of the timed training: one at the end
                            eval_every=interactions,
                            eval_episodes=wc.get("eval_episodes", grid.eval_episodes),
                            episode_length=_episode_length(grid, {}, task),
                            hyper=dict((wc.get("hyper") or {}).get(algo, {})),
                            kind="wallclock",
                            backend=backend,
                            safe_set=safe_sets.get(task),
                            safe_set_sha256=digests.get(task),
                            experiments=("wallclock",),
                            tables=(str(wc.get("table", "table6")),),
                            **task_options(task),
                        )
                    )
    specs = list(runs.values())
    _check_cells(specs)
    return specs


def _check_cells(specs: Sequence[RunSpec]) -> None:
    """Every (table, cell) must be fed by runs that differ only in their seed."""
    seen: dict[tuple[str, str, str, str, str], tuple[str, Any]] = {}
    for spec in specs:
        if spec.kind != "train":
            continue
        signature = {k: v for k, v in spec.identity().items() if k != "seed"}
        for table in spec.tables:
            key = (table, *spec.cell, spec.kind)
            previous = seen.setdefault(key, (spec.run_id, signature))
            if previous[1] != signature:
                raise ValueError(
                    f"table {table} cell {'/'.join(spec.cell)} would mix runs with different "
                    f"settings ({previous[0]} vs {spec.run_id})"
                )


def group_populations(specs: Iterable[RunSpec], size: int | None = None) -> list[list[RunSpec]]:
    """The population tasks of ``specs``: training runs (``kind='train'``) that differ only in
    their seed (:attr:`RunSpec.population_key`) form one population, seeds ascending, split into
    consecutive chunks of at most ``size`` seeds (``None``: all seeds of a configuration in one
    population).  Every other run (the Table 6 timing runs) is a population of one: its wall
    clock is the measurement.  Populations are listed in the order of their first run in
    ``specs``.

    Raises:
        ValueError: ``size`` is not a positive integer, or two specs share a run id.
    """
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise ValueError(f"population size must be a positive integer, got {size!r}")
    groups: dict[str, list[RunSpec]] = {}
    seen: set[str] = set()
    for spec in specs:
        if spec.run_id in seen:
            raise ValueError(f"run {spec.run_id} is listed twice")
        seen.add(spec.run_id)
        key = spec.population_key if spec.kind == "train" else spec.run_id
        groups.setdefault(key, []).append(spec)
    out: list[list[RunSpec]] = []
    for members in groups.values():
        members.sort(key=lambda s: s.seed)
        step = size or len(members)
        out.extend(members[i:i + step] for i in range(0, len(members), step))
    return out


def runs_by_cell(specs: Iterable[RunSpec], table: str) -> dict[tuple[str, str, str], list[RunSpec]]:
    """Training runs feeding ``table``, grouped by ``(task, algo, variant)`` (seeds sorted)."""
    out: dict[tuple[str, str, str], list[RunSpec]] = {}
    for spec in specs:
        if spec.kind == "train" and table in spec.tables:
            out.setdefault(spec.cell, []).append(spec)
    for runs in out.values():
        runs.sort(key=lambda s: s.seed)
    return out
