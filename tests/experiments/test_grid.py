"""The experiment grid as data (grids/*.json) and its expansion into run specs."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from safegbpo.experiments.grid import (
    RunSpec,
    expand,
    group_populations,
    load_grid,
    runs_by_cell,
)
from safegbpo.experiments.profiles import PROFILES, get_profile
from safegbpo.safeguards.variants import variant_labels
from safegbpo.safesets import resolve_safe_sets

VARIANT_ORDER = variant_labels()

SPEC_BUDGETS = {  # SPEC §8: interactions and evaluation interval per task and algorithm
    "pendulum": (100_000, {"shac": 2560, "ppo": 13600, "sac": 2504}),
    "quadrotor": (200_000, {"shac": 5504, "ppo": 22400, "sac": 5008}),
    "energy": (1_000_000, {"shac": 13200, "ppo": 23040, "sac": 10000}),  # SPEC §10
}
MODIFICATIONS = ["BP", "BP Regularisation", "RM", "RM Regularisation", "RM Passthrough Gradient",
                 "RM Hyperbolic", "RM Hyperbolic and Regularisation", "RM Orthogonal"]


@pytest.fixture(scope="module")
def paper_specs() -> list[RunSpec]:
    return expand(load_grid("paper"))


def test_paper_grid_covers_tables_2_to_6(paper_specs):
    training = [s for s in paper_specs if s.kind == "train"]
    # Tables 2/3: 3 tasks x 3 algos x 3 variants x 10 seeds; Tables 4/5 add 6 SHAC variants;
    # PCRPO (SPEC §12) one unsafe cell per task
    assert len(training) == 3 * 3 * 3 * 10 + 3 * 6 * 10 + 3 * 10
    cells = Counter(s.cell for s in training)
    assert set(cells.values()) == {10}
    for task in SPEC_BUDGETS:
        assert (task, "pcrpo", "No Safeguard") in cells
        for variant in MODIFICATIONS:
            assert (task, "shac", variant) in cells
        for algo in ("shac", "ppo", "sac"):
            for variant in ("No Safeguard", "BP", "RM"):
                assert (task, algo, variant) in cells
    for spec in training:
        interactions, every = SPEC_BUDGETS[spec.task]
        assert spec.interactions == interactions
        assert spec.eval_every == every["ppo" if spec.algo == "pcrpo" else spec.algo]
        assert spec.hyper == {}  # the paper's presets
    table6 = [s for s in paper_specs if s.kind == "wallclock"]
    # Table 6 times both safeguard backends; one unsafe run per algorithm is their baseline
    for backend in ("exact", "cvxpylayers"):
        timed = [s for s in table6 if s.backend in (backend, None)]
        assert sorted((s.algo, s.variant) for s in timed) == sorted(
            (a, v) for a in ("shac", "ppo", "sac") for v in ("No Safeguard", "BP", "RM"))
    assert len(table6) == 3 + 3 * 2 * 2
    assert {s.interactions for s in table6} == {10_000} and {s.task for s in table6} == {"pendulum"}


def test_shared_runs_run_once_and_feed_both_tables(paper_specs):
    ids = [s.run_id for s in paper_specs]
    assert len(ids) == len(set(ids))
    shac_bp = [s for s in paper_specs if s.cell == ("pendulum", "shac", "BP") and s.kind == "train"]
    assert len(shac_bp) == 10
    assert {"table3", "table4"} <= set(shac_bp[0].tables)
    assert set(runs_by_cell(paper_specs, "table4")) == {
        (t, "shac", v) for t in SPEC_BUDGETS for v in VARIANT_ORDER}


def test_run_ids_are_stable_readable_and_content_addressed(paper_specs):
    spec = next(s for s in paper_specs if s.cell == ("quadrotor", "shac", "RM Hyperbolic"))
    assert spec.run_id.startswith(f"quadrotor-shac-rm-hyperbolic-s{spec.seed}-")
    again = expand(load_grid("paper"))
    assert [s.run_id for s in again] == [s.run_id for s in paper_specs]
    assert RunSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    changed = RunSpec.from_dict({**spec.to_dict(), "run_id": None, "interactions": 1000})
    assert changed.run_id != spec.run_id
    with pytest.raises(ValueError, match="does not match"):
        RunSpec.from_dict({**spec.to_dict(), "run_id": "quadrotor-shac-x-s0-0000000000"})


def test_every_spec_converts_to_a_valid_train_config(paper_specs):
    from safegbpo.experiments.config import TrainConfig

    seen = set()
    for spec in paper_specs:
        key = (spec.task, spec.algo, spec.variant, spec.kind)
        if key in seen:
            continue
        seen.add(key)
        config = spec.train_config()
        assert isinstance(config, TrainConfig)
        assert (config.task, config.algo, config.seed) == (spec.task, spec.algo, spec.seed)
        assert config.interactions == spec.interactions
        assert config.eval_every == spec.eval_every
        assert config.safeguard == spec.variant_fields["safeguard"]
        assert config.regularisation == spec.variant_fields["regularisation"]


def test_quick_profile_trains_every_variant_on_both_tasks():
    specs = expand(get_profile("quick").load_grid())
    trained = {(s.task, s.variant) for s in specs if s.kind == "train" and s.algo == "shac"}
    assert trained == {(t, v) for t in SPEC_BUDGETS for v in VARIANT_ORDER}
    timing = [s for s in specs if s.kind == "wallclock"]
    assert {(s.algo, s.variant) for s in timing} == {
        (a, v) for a in ("shac", "ppo", "sac") for v in ("No Safeguard", "BP", "RM")}
    assert set(PROFILES) == {"quick", "paper"}
    with pytest.raises(ValueError, match="unknown profile"):
        get_profile("full")


def test_safe_sets_change_run_ids(tmp_path):
    grid = load_grid("paper")
    for task in ("pendulum", "quadrotor"):
        (tmp_path / f"{task}.json").write_text(json.dumps({"task": task}))
    paths = resolve_safe_sets(tmp_path, ["pendulum", "quadrotor"])
    assert paths == {t: str((tmp_path / f"{t}.json").resolve()) for t in paths}
    own = [s for s in expand(grid) if s.task in paths]
    given = [s for s in expand(grid, safe_sets=paths) if s.task in paths]
    assert not {s.run_id for s in own} & {s.run_id for s in given}
    assert all(s.safe_set == paths[s.task] and s.safe_set_sha256 for s in given)
    assert resolve_safe_sets(None, ["pendulum"]) == {"pendulum": None}
    (tmp_path / "quadrotor.json").unlink()
    with pytest.raises(FileNotFoundError, match="quadrotor"):
        resolve_safe_sets(tmp_path, ["pendulum", "quadrotor"])


def _write_grid(path: Path, **changes) -> Path:
    data = json.loads(Path(load_grid("paper").source).read_text())
    data.update(changes)
    path.write_text(json.dumps(data))
    return path


def test_invalid_grids_raise_clear_errors(tmp_path):
    bad_variant = [{"name": "x", "tasks": ["pendulum"], "algos": ["shac"], "variants": ["BP2"]}]
    with pytest.raises(ValueError, match="unknown variants"):
        load_grid(_write_grid(tmp_path / "a.json", experiments=bad_variant))
    bad_task = [{"name": "x", "tasks": ["cartpole"], "algos": ["shac"], "variants": ["BP"]}]
    with pytest.raises(ValueError, match="unknown tasks"):
        load_grid(_write_grid(tmp_path / "b.json", experiments=bad_task))
    with pytest.raises(ValueError, match="seeds"):
        load_grid(_write_grid(tmp_path / "c.json", seeds=[0, 0]))
    with pytest.raises(ValueError, match="format"):
        load_grid(_write_grid(tmp_path / "d.json", format="other"))
    with pytest.raises(ValueError, match="no grid named"):
        load_grid("no-such-grid")
    # variants are the registry's: a grid cannot redeclare them
    with pytest.raises(ValueError, match="no longer declare 'variants'"):
        load_grid(_write_grid(tmp_path / "e.json", variants={"BP": {"safeguard": "bp"}}))


def test_grids_name_variants_by_key_or_label(tmp_path):
    by_key = [{"name": "x", "tables": ["table4"], "tasks": ["pendulum"], "algos": ["shac"],
               "variants": ["none", "bp-reg", "RM Orthogonal"]}]
    specs = expand(load_grid(_write_grid(tmp_path / "k.json", experiments=by_key)),
                   include_wallclock=False)
    first_seed = [s for s in specs if s.seed == 0]
    assert [s.variant for s in first_seed] == [
        "No Safeguard", "BP Regularisation", "RM Orthogonal"]
    assert first_seed[1].variant_fields == {"safeguard": "bp", "regularisation": 0.1}


def test_a_table_cell_cannot_mix_budgets(tmp_path):
    mixed = [
        {"name": "a", "tables": ["table4"], "tasks": ["pendulum"], "algos": ["shac"],
         "variants": ["BP"], "seeds": [0]},
        {"name": "b", "tables": ["table4"], "tasks": ["pendulum"], "algos": ["shac"],
         "variants": ["BP"], "seeds": [1], "budgets": {"pendulum": {"interactions": 5120}}},
    ]
    grid = load_grid(_write_grid(tmp_path / "g.json", experiments=mixed))
    with pytest.raises(ValueError, match="mix runs"):
        expand(grid)


def test_run_spec_validation():
    base = dict(task="pendulum", algo="shac", variant="BP", seed=0,
                variant_fields={"safeguard": "bp"}, interactions=100, eval_every=10)
    RunSpec(**base)
    for change, match in [({"task": "cartpole"}, "unknown task"), ({"algo": "ddpg"}, "algorithm"),
                          ({"interactions": 0}, "interactions"), ({"seed": -1}, "seed"),
                          ({"variant_fields": {"colour": 1}}, "unknown fields"),
                          ({"kind": "bench"}, "kind")]:
        with pytest.raises(ValueError, match=match):
            RunSpec(**{**base, **change})


def test_populations_are_the_seeds_of_one_configuration(paper_specs):
    """Training runs that differ only in their seed form one population (seeds ascending);
    Table 6 timing runs stay single-seed; a size caps the populations."""
    training = [s for s in paper_specs if s.kind == "train"]
    timing = [s for s in paper_specs if s.kind == "wallclock"]
    groups = group_populations(paper_specs)
    assert sum(map(len, groups)) == len(paper_specs)
    populations = [g for g in groups if g[0].kind == "train"]
    assert len(populations) == len(training) // 10
    for group in populations:
        assert [s.seed for s in group] == list(range(10))
        assert len({s.population_key for s in group}) == 1 and len({s.cell for s in group}) == 1
        configs = [s.train_config() for s in group[:2]]
        assert set(configs[0].differences(configs[1])) == {"seed"}  # train_population's rule
    assert [g for g in groups if g[0].kind == "wallclock"] == [[s] for s in timing]
    capped = group_populations(training, 4)
    assert sorted(len(g) for g in capped) == sorted([4, 4, 2] * len(populations))
    assert [s.seed for s in capped[1]] == [4, 5, 6, 7]
    assert all(len(g) == 1 for g in group_populations(training, 1))
    # order of first appearance, whatever the order of the seeds
    shuffled = list(reversed(training[:20]))
    assert [g[0].cell for g in group_populations(shuffled)] == \
        list(dict.fromkeys(s.cell for s in shuffled))


def test_populations_keep_runs_with_different_settings_apart(tmp_path):
    base = dict(task="pendulum", algo="shac", variant="BP", variant_fields={"safeguard": "bp"},
                interactions=100, eval_every=10)
    a = [RunSpec(**base, seed=s) for s in (2, 0)]
    other_budget = RunSpec(**{**base, "interactions": 200}, seed=1)
    other_set = RunSpec(**base, seed=1, safe_set=str(tmp_path / "set.json"),
                        safe_set_sha256="0" * 64)
    tagged = RunSpec(**base, seed=1, experiments=("other",), tables=("table4",))
    groups = group_populations([*a, other_budget, other_set, tagged])
    assert [[s.seed for s in g] for g in groups] == [[0, 1, 2], [1], [1]]
    assert groups[0][1] is tagged  # experiment tags do not change what is trained
    with pytest.raises(ValueError, match="positive integer"):
        group_populations(a, 0)
    with pytest.raises(ValueError, match="listed twice"):
        group_populations([a[0], a[0]])


def test_the_safeguard_backend_is_part_of_a_safeguarded_runs_identity(paper_specs):
    training = [s for s in paper_specs if s.kind == "train"]
    assert {s.backend for s in training if s.safeguarded} == {"exact"}  # the default
    assert all(s.backend is None for s in training if not s.safeguarded)
    bp = next(s for s in training if s.cell == ("pendulum", "shac", "BP"))
    assert bp.run_id.startswith("pendulum-shac-bp-s0-")  # the default is not spelled out
    other = RunSpec.from_dict({**bp.to_dict(), "run_id": None, "backend": "cvxpylayers"})
    assert other.run_id != bp.run_id and other.run_id.startswith("pendulum-shac-bp-cvxpylayers-s0-")
    assert RunSpec.from_dict(json.loads(json.dumps(other.to_dict()))) == other
    assert (bp.train_config().backend, other.train_config().backend) == ("exact", "cvxpylayers")
    # a record written before backends existed (no backend in its identity: the cvxpylayers
    # programs were the only ones) is never reused for the exact backend
    legacy = {k: v for k, v in bp.identity().items() if k != "backend"}
    assert bp.identity() != legacy and bp.identity()["backend"] == "exact"
    # an unsafe run is the same run whatever the backend
    unsafe = next(s for s in training if not s.safeguarded)
    assert RunSpec.from_dict({**unsafe.to_dict(), "run_id": None,
                              "backend": "cvxpylayers"}) == unsafe
    assert "backend" not in unsafe.identity()
    with pytest.raises(ValueError, match="unknown safeguard backend"):
        RunSpec.from_dict({**bp.to_dict(), "run_id": None, "backend": "scs"})


def test_grids_choose_backends_and_a_cell_never_mixes_them(tmp_path):
    blocks = [{"name": "a", "tables": ["table4"], "tasks": ["pendulum"], "algos": ["shac"],
               "variants": ["none", "BP"], "seeds": [0]},
              {"name": "b", "tables": ["table5"], "tasks": ["pendulum"], "algos": ["shac"],
               "variants": ["RM"], "seeds": [0], "backend": "exact"}]
    wallclock = {"task": "pendulum", "interactions": 512, "algos": ["shac"],
                 "variants": ["none", "BP"]}
    grid = load_grid(_write_grid(tmp_path / "g.json", experiments=blocks, wallclock=wallclock,
                                 backend="cvxpylayers"))
    assert grid.backend == "cvxpylayers" and grid.wallclock["backends"] == ["cvxpylayers"]
    specs = expand(grid)
    by_cell = {(s.kind, s.variant): s.backend for s in specs}
    assert by_cell == {("train", "No Safeguard"): None, ("train", "BP"): "cvxpylayers",
                       ("train", "RM"): "exact", ("wallclock", "No Safeguard"): None,
                       ("wallclock", "BP"): "cvxpylayers"}
    both = load_grid(_write_grid(tmp_path / "w.json", experiments=blocks,
                                 wallclock={**wallclock, "backends": ["exact", "cvxpylayers"]}))
    timing = [s for s in expand(both) if s.kind == "wallclock"]
    assert sorted((s.variant, str(s.backend)) for s in timing) == [
        ("BP", "cvxpylayers"), ("BP", "exact"), ("No Safeguard", "None")]
    for bad, match in [({"backend": "scs"}, "unknown safeguard backend"),
                       ({"wallclock": {**wallclock, "backends": []}}, "backends"),
                       ({"wallclock": {**wallclock, "backends": ["exact", "exact"]}},
                        "duplicate backends"),
                       ({"experiments": [{**blocks[0], "backend": "qp"}]},
                        "unknown safeguard backend")]:
        with pytest.raises(ValueError, match=match):
            load_grid(_write_grid(tmp_path / "bad.json", **{"experiments": blocks, **bad}))
    mixed = [blocks[0], {**blocks[0], "name": "c", "seeds": [1], "backend": "cvxpylayers"}]
    with pytest.raises(ValueError, match="mix runs"):
        expand(load_grid(_write_grid(tmp_path / "m.json", experiments=mixed)))
