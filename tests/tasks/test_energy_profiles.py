"""Exogenous profiles of the energy task: generated year, CSV round trip, bad files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from safegbpo.tasks.energy_profiles import (
    COLUMNS,
    HOURS,
    PRICE_SCHEDULE,
    EnergyProfiles,
    buying_price_schedule,
    generate_profiles,
    main,
    reference_profiles_path,
    resolve_profiles,
)


@pytest.fixture(scope="module")
def generated() -> EnergyProfiles:
    return generate_profiles(0)


@pytest.fixture(scope="module")
def csv_text(generated, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("profiles") / "year.csv"
    generated.to_csv(path)
    return path.read_text()


def write(tmp_path: Path, text: str, name: str = "p.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --------------------------------------------------------------------------------------------
# the generated year
# --------------------------------------------------------------------------------------------
def test_price_schedule_is_spec_10():
    assert len(PRICE_SCHEDULE) == 24
    expected = [0.2] * 6 + [0.4] * 5 + [0.2] * 6 + [0.5] * 5 + [0.2] * 2
    assert list(PRICE_SCHEDULE) == expected
    assert buying_price_schedule(np.array([0, 6, 10, 11, 17, 21, 22, 24 + 18])).tolist() == \
        [0.2, 0.4, 0.4, 0.2, 0.5, 0.5, 0.2, 0.5]


def test_generated_year_is_plausible(generated):
    assert generated.source == "generated (seed 0)"
    assert generated.load.shape == (HOURS,)
    t_out = generated.outside_temperature
    assert t_out.min() >= -10.0 and t_out.max() <= 40.0
    daily = t_out.reshape(-1, 24).mean(axis=1)
    assert daily[:31].mean() < 5.0 < 15.0 < daily[182:213].mean()  # January cold, July warm
    assert generated.load.max() == pytest.approx(1.0) and generated.load.min() >= 0.0
    pv = generated.pv.reshape(-1, 24)
    assert np.all(pv[:, :3] == 0.0) and np.all(pv[:, 22:] == 0.0)  # no sun at night
    assert pv[:, 12].mean() > 0.1 and 0.0 < generated.pv.max() <= 1.0
    assert pv[150:200].mean() > 2 * pv[:30].mean()  # more PV in summer
    load = generated.load.reshape(-1, 24).mean(axis=0)
    assert load[19] > load[3] and load[7] > load[3]  # evening and morning peaks over the night
    np.testing.assert_array_equal(generated.buying_price,
                                  buying_price_schedule(np.arange(HOURS)))


def test_generated_year_is_seeded(generated):
    again = generate_profiles(0)
    np.testing.assert_array_equal(again.as_array(), generated.as_array())
    other = generate_profiles(1)
    assert not np.array_equal(other.outside_temperature, generated.outside_temperature)
    with pytest.raises(ValueError, match="seed"):
        generate_profiles(-1)


def test_profiles_are_read_only(generated):
    with pytest.raises(ValueError):
        generated.load[0] = 0.5


# --------------------------------------------------------------------------------------------
# CSV
# --------------------------------------------------------------------------------------------
def test_csv_round_trip(generated, tmp_path):
    path = generated.to_csv(tmp_path / "year.csv")
    header = path.read_text().splitlines()[0]
    assert header == ",".join(COLUMNS)
    loaded = EnergyProfiles.from_csv(path)
    np.testing.assert_array_equal(loaded.as_array(), generated.as_array())
    assert loaded.source == str(path)


def test_cli_writes_a_loadable_file(tmp_path, capsys):
    out = tmp_path / "gen.csv"
    assert main(["--out", str(out), "--seed", "3"]) == 0
    assert "wrote" in capsys.readouterr().out
    np.testing.assert_array_equal(EnergyProfiles.from_csv(out).as_array(),
                                  generate_profiles(3).as_array())


def test_extra_columns_and_column_order_are_accepted(csv_text, tmp_path):
    lines = csv_text.splitlines()
    rows = [line.split(",") for line in lines]
    reordered = [",".join([r[4], r[0], "x", r[2], r[1], r[3]]) for r in rows]
    reordered[0] = "buying_price,hour,note,pv,load,outside_temperature"
    loaded = EnergyProfiles.from_csv(write(tmp_path, "\n".join(reordered) + "\n"))
    np.testing.assert_array_equal(loaded.as_array(),
                                  EnergyProfiles.from_csv(write(tmp_path, csv_text, "a.csv"))
                                  .as_array())


@pytest.mark.parametrize("mutate, match", [
    (lambda ls: [ls[0].replace(",pv", ",solar")] + ls[1:], r"missing column\(s\) \['pv'\]"),
    (lambda ls: ls[:-1], "expected 8784 hourly rows.*got 8783"),
    (lambda ls: ls + ["8784,0.1,0,1,0.2"], "expected 8784 hourly rows.*got 8785"),
    (lambda ls: ls[:10] + ["9,0.1,0,nan,0.2"] + ls[11:],
     r"line 11, column 'outside_temperature' is nan"),
    (lambda ls: ls[:5] + ["4,abc,0,1,0.2"] + ls[6:],
     r"line 6, column 'load': 'abc' is not a number"),
    (lambda ls: ls[:3] + [ls[4], ls[3]] + ls[5:], "hour must run 0 .. 8783 in order"),
    (lambda ls: ls[:8] + ["7,1.5,0,1,0.2"] + ls[9:], r"load must be normalised to \[0, 1\]"),
    (lambda ls: ls[:8] + ["7,0.5,0,1,-0.2"] + ls[9:], "buying_price must be >= 0"),
    (lambda ls: ls[:8] + ["7,0.5,0,1"] + ls[9:], "line 9 has 4 fields"),
    (lambda ls: [], "empty file"),
])
def test_bad_files_get_a_clear_error(csv_text, tmp_path, mutate, match):
    lines = mutate(csv_text.splitlines())
    path = write(tmp_path, "\n".join(lines) + ("\n" if lines else ""))
    with pytest.raises(ValueError, match=match) as err:
        EnergyProfiles.from_csv(path)
    if lines:
        assert str(path) in str(err.value)  # the message names the file


def test_missing_file_and_bad_types(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        EnergyProfiles.from_csv(tmp_path / "nope.csv")
    with pytest.raises(FileNotFoundError, match="no such file"):
        resolve_profiles(tmp_path / "nope.csv")
    with pytest.raises(TypeError, match="profiles must be"):
        resolve_profiles(42)


def test_constructor_validates_arrays(generated):
    arrays = generated.as_array().T
    with pytest.raises(ValueError, match="8784 hourly values"):
        EnergyProfiles(arrays[0][:100], *arrays[1:])
    bad = arrays.copy()
    bad[2, 7] = math.inf
    with pytest.raises(ValueError, match="outside_temperature contains NaN/inf .*hour 7"):
        EnergyProfiles(*bad)


def test_resolve_default_is_the_generated_year(generated):
    default = resolve_profiles(None)
    assert default.source == "generated (seed 0)"
    np.testing.assert_array_equal(default.as_array(), generated.as_array())
    assert resolve_profiles(default) is default


# --------------------------------------------------------------------------------------------
# the reference's profiles (read from ../shared at run time)
# --------------------------------------------------------------------------------------------
@pytest.mark.reproduction
def test_reference_profiles_load():
    path = reference_profiles_path()
    if path is None:
        pytest.skip("../shared/reference/energy_system/profiles.csv not present")
    ref = resolve_profiles("reference")
    assert ref.source == str(path)
    low, high = ref.temperature_range()
    assert -10.0 <= low and high <= 40.0  # inside W: the safe sets' guarantee covers it
    np.testing.assert_array_equal(ref.buying_price, buying_price_schedule(np.arange(HOURS)))
    assert ref.load.max() == pytest.approx(1.0)
