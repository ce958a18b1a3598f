"""One edit adds a task, a variant or an algorithm: the registries flow into the grid, the
metrics, the spec, the figures, the benchmark and the command line."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from safegbpo.algorithms import (
    SHAC,
    AlgorithmSpec,
    SHACConfig,
    algorithm_names,
    get_algorithm,
    register_algorithm,
    unregister_algorithm,
)
from safegbpo.cli import build_parser
from safegbpo.experiments.cells import cell_sort_key
from safegbpo.experiments.config import TrainConfig
from safegbpo.experiments.grid import expand, load_grid
from safegbpo.safeguards.variants import (
    Variant,
    get_variant,
    register_variant,
    unregister_variant,
    variant_labels,
)
from safegbpo.tasks import register_task, unregister_task
from spec.checks.expectations import audited_variants, expectations_for
from spec.cli import build_spec_parser
from spec.paper.values import table_variants
from tests.tasks.conftest import FAKE_KEY, fake_spec

NEW_VARIANT = Variant("rm-hyperbolic-passthrough", "RM Hyperbolic Passthrough",
                      "Hyperbolic Ray Mask Passthrough", "rm",
                      {"mapping": "hyperbolic", "centre": "zonotopic", "passthrough": True})


@pytest.fixture()
def new_variant() -> Iterator[Variant]:
    register_variant(NEW_VARIANT)
    try:
        yield NEW_VARIANT
    finally:
        unregister_variant(NEW_VARIANT.key)


@pytest.fixture()
def new_task() -> Iterator[str]:
    register_task(fake_spec())
    try:
        yield FAKE_KEY
    finally:
        unregister_task(FAKE_KEY)


def _grid(tmp_path: Path, **block) -> Path:
    data = {"format": "safegbpo-grid/1", "name": "flow", "seeds": [0, 1],
            "experiments": [{"name": "x", "tables": ["table4"], "algos": ["shac"], **block}]}
    path = tmp_path / "grid.json"
    path.write_text(json.dumps(data))
    return path


def test_a_registered_variant_flows_everywhere(new_variant, tmp_path):
    # grid files name it (by key or label); its run config comes from the entry
    specs = expand(load_grid(_grid(tmp_path, tasks=["pendulum"],
                                   variants=["none", NEW_VARIANT.key])))
    mine = [s for s in specs if s.variant == NEW_VARIANT.label]
    assert len(mine) == 2 and mine[0].variant_fields == NEW_VARIANT.train_fields
    assert mine[0].train_config().passthrough is True
    # report order and the archive label (metrics of archived curves)
    assert variant_labels()[-1] == NEW_VARIANT.label
    assert get_variant(NEW_VARIANT.archive_label) is new_variant
    assert cell_sort_key("pendulum", "shac", "RM Orthogonal") < cell_sort_key(
        "pendulum", "shac", NEW_VARIANT.label)
    # spec: audited as a map, with the required properties only (the paper says nothing)
    audited = {v.key: v for v in audited_variants()}
    assert NEW_VARIANT.key in audited
    assert audited[NEW_VARIANT.key].expectations == expectations_for("my.module:Guard")
    assert NEW_VARIANT.key in build_spec_parser().parse_args(
        ["--variants", NEW_VARIANT.key]).variants
    assert NEW_VARIANT.label in table_variants("table4")
    assert NEW_VARIANT.label not in table_variants("table5")
    # the benchmark times every registered map
    bench = _load_benchmark()
    assert (NEW_VARIANT.label, "rm", dict(NEW_VARIANT.options)) in bench.benchmarked_variants()


def test_a_registered_task_flows_everywhere(new_task, tmp_path, capsys):
    # grids train on it with the entry's budget and evaluation grid
    specs = expand(load_grid(_grid(tmp_path, tasks=[new_task], variants=["none"])))
    assert {(s.task, s.interactions, s.eval_every) for s in specs} == {(new_task, 4096, 1024)}
    assert TrainConfig(task=new_task).validate().num_envs == 3
    assert cell_sort_key("quadrotor", "shac", "BP") < cell_sort_key(new_task, "shac", "BP")
    # every command's --task help lists it
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    assert new_task in capsys.readouterr().out
    with pytest.raises(SystemExit):
        build_parser().parse_args(["audit", "--help"])
    assert new_task in capsys.readouterr().out
    args = build_spec_parser().parse_args(["--all"])
    from safegbpo.cli.options import resolve_tasks

    assert new_task in resolve_tasks(args.tasks)


def test_a_registered_algorithm_is_trainable_by_name():
    alias = AlgorithmSpec("shac-copy", "SHAC copy", SHAC, SHACConfig)
    register_algorithm(alias)
    try:
        assert "shac-copy" in algorithm_names() and get_algorithm("shac-copy") is alias
        config = TrainConfig(task="pendulum", algo="shac-copy", hyper=SHACConfig(),
                             eval_every=512).validate()
        assert config.interactions == 100_000
        with pytest.raises(ValueError, match="already registered"):
            register_algorithm(alias)
    finally:
        unregister_algorithm("shac-copy")
    with pytest.raises(ValueError, match="unknown algorithm 'shac-copy'"):
        get_algorithm("shac-copy")


def test_an_algorithm_without_safeguard_refuses_one():
    register_algorithm(AlgorithmSpec("soft", "Soft", SHAC, SHACConfig, safeguarded=False))
    try:
        with pytest.raises(ValueError, match="trains without a safeguard"):
            TrainConfig(task="pendulum", algo="soft", hyper=SHACConfig(), eval_every=512,
                        safeguard="bp").validate()
    finally:
        unregister_algorithm("soft")


def _load_benchmark():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_safeguards.py"
    spec = importlib.util.spec_from_file_location("bench_safeguards", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
