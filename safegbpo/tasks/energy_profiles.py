"""Exogenous hourly data of the household energy task (SPEC §10): one year of profiles.

An :class:`EnergyProfiles` holds ``HOURS = 8784`` hourly values (a leap year, as the reference's
data) of

* ``load`` -- household electricity demand, normalised to ``[0, 1]``;
* ``pv`` -- photovoltaic generation, normalised to ``[0, 1]``;
* ``outside_temperature`` -- in degrees Celsius; the energy model's safe set is certified for
  ``t_out in W = [-10, 40]`` (SPEC §10), which the environment checks when it loads profiles;
* ``buying_price`` -- the electricity price per unit of energy; the reference uses the daily
  schedule :data:`PRICE_SCHEDULE` (selling price ``0.08``, a model constant).

File format (CSV, the format of ``../shared/reference/energy_system/profiles.csv``)::

    hour,load,pv,outside_temperature,buying_price
    0,0.2766849995,0,2.063999891,0.2
    ...                                   (8784 data rows, hour = 0 .. 8783 in order)

Extra columns are ignored.  :meth:`EnergyProfiles.from_csv` rejects, with a message naming the
file, column and row: a missing file, a missing column, a wrong number of rows, hours that are not
``0 .. 8783`` in order, a value that is not a number, NaN/inf, ``load``/``pv`` outside ``[0, 1]``
and negative prices.

The default when no file is given is :func:`generate_profiles`: the project's own seeded model of
a Central-European year (documented below), so the task runs on a fresh machine with no data.
The reference's profiles are read at run time from ``../shared`` when present
(:func:`reference_profiles_path`, located by :func:`safegbpo.reference.reference_path`;
:func:`resolve_profiles`), never copied into the repository.

Naming profiles (the energy environment's option ``profiles``, :func:`profiles_option`):
``None`` or ``"generated"`` -- the generated year; ``"reference"`` -- the reference's CSV
(an error when absent); ``"auto"`` -- the reference's CSV when present, else the generated year
(what ``safegbpo reproduce`` uses); any other string -- a CSV path.

Generated year (:func:`generate_profiles`, all randomness from one ``np.random.Generator``):

* hour ``h``, day ``d = h // 24`` (0 = 1 January), hour of day ``t = h % 24``; seasonal phase
  ``phi(d) = 2 pi (d - 172) / 366`` (0 at the summer solstice);
* **outside temperature**: ``9.5 - 9.5 cos(2 pi (d - 15) / 366)`` (coldest mid-January, mean
  9.5 C) ``+ A(d) cos(2 pi (t - 15) / 24)`` (daily swing peaking at 15:00, amplitude
  ``A(d) = 4 + 2 cos(phi(d))``) ``+`` an hourly AR(1) weather anomaly (``0.97`` per hour,
  stationary standard deviation ``3.5`` C), clipped to ``[-10, 40]``;
* **PV**: a clear-sky bell ``peak(d) sin(pi (t + 0.5 - sunrise) / L(d))^1.5`` over the day length
  ``L(d) = 12 + 4 cos(phi(d))`` hours centred on 12:30 (zero at night), peak
  ``0.45 + 0.2 cos(phi(d))``, times a daily clearness ``Beta(2.5, 1.5)`` and an hourly factor
  ``clip(1 + 0.15 N(0, 1), 0, 1.3)``, clipped to ``[0, 1]``;
* **load**: base ``0.35`` plus a morning peak (07:30, height ``0.9``, width 1.2 h), a daytime
  plateau (``0.5`` from 09:00 to 17:00) and an evening peak (19:00, height ``1.2``, width 2 h),
  times a winter factor ``1 + 0.2 cos(2 pi (d - 15) / 366)`` and log-normal noise
  (``sigma = 0.35``), then divided by its yearly maximum (so it lies in ``[0, 1]`` with max 1,
  like the reference);
* **buying price**: exactly :data:`PRICE_SCHEDULE` by hour of day.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "COLUMNS",
    "HOURS",
    "PRICE_SCHEDULE",
    "EnergyProfiles",
    "buying_price_schedule",
    "describe_profiles",
    "generate_profiles",
    "profiles_option",
    "reference_profiles_path",
    "resolve_profiles",
]

#: Hours of the profile year (a leap year: 366 days, as the reference's data).
HOURS = 8784
#: Columns of the CSV format, in order (``hour`` first).
COLUMNS: tuple[str, ...] = ("hour", "load", "pv", "outside_temperature", "buying_price")
#: Buying price by hour of day (SPEC §10): 0.2 (0-5), 0.4 (6-10), 0.2 (11-16), 0.5 (17-21),
#: 0.2 (22-23).
PRICE_SCHEDULE: tuple[float, ...] = (0.2,) * 6 + (0.4,) * 5 + (0.2,) * 6 + (0.5,) * 5 + (0.2,) * 2
#: Seed of the default generated year.
DEFAULT_SEED = 0
_GENERATED_RANGE = (-10.0, 40.0)  # clip of the generated outside temperature (= W, SPEC §10)


def buying_price_schedule(hours: np.ndarray) -> np.ndarray:
    """Buying price of each hour of the year ``(H,)`` (:data:`PRICE_SCHEDULE` by hour of day)."""
    return np.asarray(PRICE_SCHEDULE, dtype=np.float64)[np.asarray(hours, dtype=np.int64) % 24]


@dataclass(frozen=True, eq=False)
class EnergyProfiles:
    """One year of hourly exogenous data (module docstring); arrays ``(HOURS,)`` float64.

    Attributes:
        load, pv, outside_temperature, buying_price: the four profiles.
        source: where they come from (a file path, or ``"generated (seed N)"``).
    """

    load: np.ndarray
    pv: np.ndarray
    outside_temperature: np.ndarray
    buying_price: np.ndarray
    source: str = ""

    def __post_init__(self) -> None:
        for name in COLUMNS[1:]:
            arr = np.array(getattr(self, name), dtype=np.float64)  # a private copy
            if arr.shape != (HOURS,):
                raise ValueError(f"{self._origin()}: {name} must have {HOURS} hourly values "
                                 f"(one leap year), got shape {arr.shape}")
            bad = np.flatnonzero(~np.isfinite(arr))
            if bad.size:
                raise ValueError(f"{self._origin()}: {name} contains NaN/inf (first at hour "
                                 f"{int(bad[0])})")
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        for name in ("load", "pv"):
            arr = getattr(self, name)
            bad = np.flatnonzero((arr < 0.0) | (arr > 1.0))
            if bad.size:
                raise ValueError(f"{self._origin()}: {name} must be normalised to [0, 1]; hour "
                                 f"{int(bad[0])} has {arr[bad[0]]:.6g}")
        bad = np.flatnonzero(self.buying_price < 0.0)
        if bad.size:
            raise ValueError(f"{self._origin()}: buying_price must be >= 0; hour {int(bad[0])} "
                             f"has {self.buying_price[bad[0]]:.6g}")

    def _origin(self) -> str:
        return self.source or "energy profiles"

    # -- views ---------------------------------------------------------------------------------
    @property
    def hours(self) -> int:
        return HOURS

    def as_array(self) -> np.ndarray:
        """``(HOURS, 4)``: columns ``load, pv, outside_temperature, buying_price``."""
        return np.stack([self.load, self.pv, self.outside_temperature, self.buying_price], axis=1)

    def temperature_range(self) -> tuple[float, float]:
        """Smallest and largest outside temperature of the year."""
        return float(self.outside_temperature.min()), float(self.outside_temperature.max())

    def describe(self) -> dict[str, Any]:
        """JSON-ready summary (source and per-profile min / mean / max)."""
        out: dict[str, Any] = {"source": self.source, "hours": HOURS}
        for name in COLUMNS[1:]:
            arr = getattr(self, name)
            out[name] = {"min": float(arr.min()), "mean": float(arr.mean()),
                         "max": float(arr.max())}
        return out

    # -- IO ------------------------------------------------------------------------------------
    @classmethod
    def from_csv(cls, path: str | os.PathLike) -> EnergyProfiles:
        """Load and validate a profile CSV (module docstring).

        Raises:
            FileNotFoundError: no such file.
            ValueError: missing column, wrong number of rows, hours not ``0 .. 8783`` in order,
                non-numeric / NaN / inf values, out-of-range values (the message names the file,
                the column and the row).
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"energy profiles: no such file {path}")
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            try:
                header = [h.strip() for h in next(reader)]
            except StopIteration:
                raise ValueError(f"{path}: empty file (expected the header "
                                 f"{','.join(COLUMNS)})") from None
            missing = [c for c in COLUMNS if c not in header]
            if missing:
                raise ValueError(f"{path}: missing column(s) {missing}; expected the header "
                                 f"{','.join(COLUMNS)} (found {header})")
            index = [header.index(c) for c in COLUMNS]
            rows = [row for row in reader if any(cell.strip() for cell in row)]
        if len(rows) != HOURS:
            raise ValueError(f"{path}: expected {HOURS} hourly rows (one leap year, hour 0 .. "
                             f"{HOURS - 1}), got {len(rows)}")
        values = np.empty((HOURS, len(COLUMNS)), dtype=np.float64)
        for r, row in enumerate(rows):
            line = r + 2  # 1-based, after the header
            if len(row) < len(header):
                raise ValueError(f"{path}: line {line} has {len(row)} fields, the header "
                                 f"{len(header)}")
            for k, (col, i) in enumerate(zip(COLUMNS, index, strict=True)):
                text = row[i].strip()
                try:
                    value = float(text)
                except ValueError:
                    raise ValueError(f"{path}: line {line}, column {col!r}: {text!r} is not a "
                                     "number") from None
                if not math.isfinite(value):
                    raise ValueError(f"{path}: line {line}, column {col!r} is {text} (NaN/inf "
                                     "values are not allowed)")
                values[r, k] = value
        hours = values[:, 0]
        wrong = np.flatnonzero(hours != np.arange(HOURS))
        if wrong.size:
            r = int(wrong[0])
            raise ValueError(f"{path}: line {r + 2}: hour must run 0 .. {HOURS - 1} in order, "
                             f"found {hours[r]:g} where {r} was expected")
        load, pv, temperature, price = values[:, 1:].T
        return cls(load, pv, temperature, price, source=str(path))

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Write the profiles in the CSV format (atomically); returns the path."""
        from safegbpo.io import atomic_write_text

        lines = [",".join(COLUMNS)]
        for h, row in enumerate(self.as_array()):
            lines.append(f"{h}," + ",".join(repr(float(v)) for v in row))
        return atomic_write_text(path, "\n".join(lines) + "\n")


# ------------------------------------------------------------------------------------------
# the generated year
# ------------------------------------------------------------------------------------------
def generate_profiles(seed: int = DEFAULT_SEED) -> EnergyProfiles:
    """The project's generated year of profiles (module docstring), reproducible from ``seed``."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    rng = np.random.default_rng(int(seed))
    h = np.arange(HOURS)
    day = h // 24
    t = (h % 24).astype(np.float64)
    season = np.cos(2.0 * np.pi * (day - 172) / 366.0)  # +1 summer solstice, -1 winter
    cold = np.cos(2.0 * np.pi * (day - 15) / 366.0)  # +1 mid-January

    # outside temperature: seasonal + daily sinusoid + AR(1) weather anomaly
    phi, sd = 0.97, 3.5
    shocks = rng.normal(0.0, sd * math.sqrt(1.0 - phi**2), size=HOURS)
    anomaly = np.empty(HOURS)
    anomaly[0] = rng.normal(0.0, sd)
    for k in range(1, HOURS):
        anomaly[k] = phi * anomaly[k - 1] + shocks[k]
    daily = (4.0 + 2.0 * season) * np.cos(2.0 * np.pi * (t - 15.0) / 24.0)
    temperature = np.clip(9.5 - 9.5 * cold + daily + anomaly, *_GENERATED_RANGE)

    # PV: clear-sky bell over the day length, daily clearness, hourly flicker
    length = 12.0 + 4.0 * season
    sunrise = 12.5 - length / 2.0
    phase = (t + 0.5 - sunrise) / length
    bell = np.where((phase > 0.0) & (phase < 1.0), np.sin(np.pi * np.clip(phase, 0.0, 1.0)), 0.0)
    clearness = rng.beta(2.5, 1.5, size=HOURS // 24)[day]
    flicker = np.clip(1.0 + 0.15 * rng.normal(size=HOURS), 0.0, 1.3)
    pv = np.clip((0.45 + 0.2 * season) * bell**1.5 * clearness * flicker, 0.0, 1.0)

    # load: base + morning peak + daytime plateau + evening peak, winter factor, noise
    shape = (0.35 + 0.9 * np.exp(-0.5 * ((t - 7.5) / 1.2) ** 2)
             + 0.5 * ((t >= 9) & (t <= 17)) + 1.2 * np.exp(-0.5 * ((t - 19.0) / 2.0) ** 2))
    raw = shape * (1.0 + 0.2 * cold) * rng.lognormal(0.0, 0.35, size=HOURS)
    load = raw / raw.max()

    return EnergyProfiles(load, pv, temperature, buying_price_schedule(h),
                          source=f"generated (seed {int(seed)})")


# ------------------------------------------------------------------------------------------
# resolution
# ------------------------------------------------------------------------------------------
def reference_profiles_path() -> Path | None:
    """``../shared/reference/energy_system/profiles.csv`` if it exists, else ``None``
    (:func:`safegbpo.reference.reference_path`)."""
    from safegbpo.reference import reference_path

    path = reference_path("energy_system", "profiles.csv")
    return path if path is not None and path.is_file() else None


_REFERENCE_ABSENT = ("energy profiles 'reference': ../shared/reference/energy_system/"
                     "profiles.csv is not present")


def profiles_option(profiles: Any) -> str | None:
    """The canonical form of a ``profiles`` option (module docstring): ``None`` for the
    generated year, else the absolute path of a CSV file (``'reference'`` and ``'auto'``
    resolved to the reference's file).  Reads no data; the file is checked when loaded.

    Raises:
        ValueError: ``'reference'`` while the reference's CSV is not present, or a value that
            is neither ``None`` nor a string / path.
    """
    if profiles is None or profiles == "generated":
        return None
    if profiles in ("reference", "auto"):
        path = reference_profiles_path()
        if path is None and profiles == "reference":
            raise ValueError(_REFERENCE_ABSENT)
        return None if path is None else str(path)
    if isinstance(profiles, str | os.PathLike) and os.fspath(profiles):
        return os.path.abspath(os.path.expanduser(os.fspath(profiles)))
    raise ValueError("profiles must be None, 'generated', 'reference', 'auto' or a CSV path, "
                     f"got {profiles!r}")


def resolve_profiles(profiles: Any = None) -> EnergyProfiles:
    """:class:`EnergyProfiles` from ``None`` / ``"generated"`` (the generated year, seed 0),
    ``"reference"`` (the ``../shared`` reference file; ``FileNotFoundError`` when absent),
    ``"auto"`` (the reference file when present, else the generated year), a CSV path or an
    :class:`EnergyProfiles` (itself).

    Raises:
        TypeError: any other type.
    """
    if profiles is None or (isinstance(profiles, str) and profiles == "generated"):
        return _generated_default()
    if isinstance(profiles, EnergyProfiles):
        return profiles
    if isinstance(profiles, str) and profiles in ("reference", "auto"):
        path = reference_profiles_path()
        if path is None:
            if profiles == "auto":
                return _generated_default()
            raise FileNotFoundError(_REFERENCE_ABSENT)
        return _load_cached(path)
    if isinstance(profiles, str | os.PathLike):
        return _load_cached(Path(profiles))
    raise TypeError("profiles must be None, 'reference', a CSV path or EnergyProfiles, got "
                    f"{type(profiles).__name__}")


def describe_profiles(profiles: str | None) -> dict[str, Any]:
    """Which profiles a canonical ``profiles`` option (:func:`profiles_option`) names, for
    manifests and reports: ``{"source", "path", "summary"}`` (``source`` says whether it is the
    reference's file, another file or the generated year)."""
    loaded = resolve_profiles(profiles)
    reference = reference_profiles_path()
    if profiles is None:
        source = f"{loaded.source}: the project's generated year" + (
            " (no reference CSV found)" if reference is None else "")
    elif reference is not None and Path(profiles).resolve() == reference.resolve():
        source = f"reference {profiles}"
    else:
        source = f"file {profiles}"
    return {"source": source, "path": profiles, "summary": loaded.describe()}


_CACHE: dict[Any, EnergyProfiles] = {}


def _generated_default() -> EnergyProfiles:
    key = ("generated", DEFAULT_SEED)
    if key not in _CACHE:
        _CACHE[key] = generate_profiles(DEFAULT_SEED)
    return _CACHE[key]


def _load_cached(path: Path) -> EnergyProfiles:
    """Parse a CSV once per (path, mtime, size): evaluation and training envs share it."""
    path = path.expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"energy profiles: no such file {path}")
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key not in _CACHE:
        _CACHE[key] = EnergyProfiles.from_csv(path)
    return _CACHE[key]


def main(argv: list[str] | None = None) -> int:
    """``python -m safegbpo.tasks.energy_profiles --out FILE [--seed N]``: write the generated
    year in the CSV format (a starting point for one's own profiles)."""
    import argparse

    parser = argparse.ArgumentParser(description="Write the generated year of energy profiles "
                                                 "(SPEC §10 CSV format).")
    parser.add_argument("--out", required=True, help="output CSV file")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="generator seed")
    args = parser.parse_args(argv)
    profiles = generate_profiles(args.seed)
    path = profiles.to_csv(args.out)
    print(f"wrote {path} ({profiles.source}; outside temperature "
          f"{profiles.temperature_range()[0]:.1f} .. {profiles.temperature_range()[1]:.1f} C)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
