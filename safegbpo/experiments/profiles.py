"""Reproduction profiles: which grid ``safegbpo reproduce --profile NAME`` runs, and why.

* ``quick`` (default of ``nox -s reproduce``; under 30 minutes on 2 idle cores) -- a miniature
  of the paper campaign: SHAC unsafe, BP and RM with three seeds (seed populations) on the
  pendulum and the quadrotor under the SPEC §13 protocol, the pendulum long enough (46080
  interactions) for the seed mean to pass the paper's converged level (the ``level`` check);
  every safeguard variant of SPEC §5 trains SHAC for two windows on every task of its grid
  (pendulum, quadrotor, energy system) while an independent monitor checks that every realised
  state lies in the safe state zonotope; the Table 6 wall-clock ratios are measured for
  SHAC/PPO/SAC unsafe vs BP vs RM on a scaled-down number of pendulum interactions.  Its cells
  run fewer seeds and smaller budgets than the paper's; the report marks each with what it ran
  and gives no verdict on them.  PCRPO (the soft-constraint baseline, SPEC §12) trains two
  short iterations per task under the same monitor.
* ``paper`` -- ten seeds, the paper's budgets and evaluation grids, every row of Tables 2-6,
  and PCRPO at PPO's budgets (SPEC §12).

The grids themselves are data (``grids/quick.json``, ``grids/paper.json``); the checks a profile
runs after training are declared in its grid's ``checks`` (evaluated by :mod:`.reproduce`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from safegbpo.experiments.grid import Grid, grid_path, load_grid

__all__ = ["PROFILES", "Profile", "get_profile"]


@dataclass(frozen=True)
class Profile:
    """A named reproduction profile.

    Attributes:
        name: ``--profile`` value.
        grid: packaged grid name (or a grid file path).
        description: one line for ``--help`` and the report.
        time_budget_minutes: intended upper bound of the wall clock on 2 cores (``None``:
            days of compute, run it on a cluster with ``--executor ray``).
        monitor_safety: train every run under the independent safe-state monitor.
    """

    name: str
    grid: str
    description: str
    time_budget_minutes: float | None
    monitor_safety: bool = True

    def load_grid(self) -> Grid:
        return load_grid(self.grid)

    @property
    def grid_file(self) -> Path:
        return grid_path(self.grid)


PROFILES: dict[str, Profile] = {
    "quick": Profile(
        name="quick",
        grid="quick",
        description="campaign miniature: SHAC unsafe/BP/RM, 3 seeds, pendulum (46k, passes "
                    "the paper's level) and quadrotor (22k); every safeguard variant on the "
                    "three tasks for two windows, safety monitored; PCRPO's unsafe states; "
                    "Table 6 ratios on scaled-down interactions (< 30 min idle)",
        time_budget_minutes=30.0,
    ),
    "paper": Profile(
        name="paper",
        grid="paper",
        description="ten seeds, the paper's budgets, every row of Tables 2-6",
        time_budget_minutes=None,
    ),
}


def get_profile(name: str) -> Profile:
    """The profile called ``name``.

    Raises:
        ValueError: unknown name (the message lists the profiles).
    """
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; expected one of {sorted(PROFILES)}") from None
