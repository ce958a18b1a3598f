"""Offscreen RGB rendering of the tasks with matplotlib's Agg canvas (no display, no pyplot).

Each *scene* owns one small :class:`matplotlib.figure.Figure` drawn on a
:class:`~matplotlib.backends.backend_agg.FigureCanvasAgg`; rendering a batch updates the artists'
data env by env and copies the canvas buffer.  Nothing touches pyplot's global state, so scenes
are safe to use from tests and worker processes.

Shapes: ``render(...)`` returns ``uint8`` arrays ``(batch, size, size, 3)``.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

__all__ = ["Scene", "PendulumScene", "QuadrotorScene", "DEFAULT_SIZE"]

DEFAULT_SIZE = 128
_DPI = 64
_BACKGROUND = "#ffffff"


def _as_batch(array: np.ndarray, width: int, name: str) -> np.ndarray:
    """Validate a ``(batch, width)`` finite float array (numpy)."""
    array = np.asarray(array, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != width:
        raise ValueError(f"{name}: expected shape (batch, {width}), got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN/inf")
    return array


class Scene:
    """A square offscreen figure with one full-size, axis-free, equal-aspect axes."""

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        if int(size) != size or size < 16:
            raise ValueError(f"size must be an integer >= 16 pixels, got {size!r}")
        self.size = int(size)
        self.figure = Figure(figsize=(self.size / _DPI, self.size / _DPI), dpi=_DPI,
                             facecolor=_BACKGROUND)
        self.canvas = FigureCanvasAgg(self.figure)
        self.ax = self.figure.add_axes((0.0, 0.0, 1.0, 1.0))
        self.ax.set_axis_off()
        self.ax.set_aspect("equal")

    def _frame(self) -> np.ndarray:
        """Draw the canvas and return an ``(size, size, 3)`` uint8 copy of its RGB buffer."""
        self.canvas.draw()
        rgba = np.asarray(self.canvas.buffer_rgba())
        return rgba[..., :3].copy()

    def close(self) -> None:
        """Release the figure's artists."""
        self.figure.clear()


class PendulumScene(Scene):
    """Pendulum: a rod of length ``l`` from the pivot, ``theta = 0`` pointing up."""

    def __init__(self, length: float = 1.0, size: int = DEFAULT_SIZE) -> None:
        super().__init__(size)
        self.length = float(length)
        lim = 1.25 * self.length
        self.ax.set_xlim(-lim, lim)
        self.ax.set_ylim(-lim, lim)
        # upright reference (the balance target) and the rod
        self.ax.add_line(Line2D([0.0, 0.0], [0.0, self.length], color="#cccccc", lw=1.0,
                                ls="--"))
        self._rod = Line2D([0.0, 0.0], [0.0, self.length], color="#c0392b", lw=6.0,
                           solid_capstyle="round")
        self.ax.add_line(self._rod)
        self.ax.add_line(Line2D([0.0], [0.0], marker="o", markersize=5, color="#222222"))

    def render(self, states: np.ndarray) -> np.ndarray:
        """``states (batch, 2)`` ``(theta, theta_dot)`` -> ``(batch, size, size, 3)`` uint8."""
        states = _as_batch(states, 2, "states")
        frames = np.empty((states.shape[0], self.size, self.size, 3), dtype=np.uint8)
        for i, theta in enumerate(states[:, 0]):
            self._rod.set_data([0.0, self.length * math.sin(theta)],
                               [0.0, self.length * math.cos(theta)])
            frames[i] = self._frame()
        return frames


class QuadrotorScene(Scene):
    """Planar quadrotor: a body with two rotors at roll ``phi``, and the goal ``(x_g, z_g)``.

    The thrust acts along ``(sin phi, cos phi)`` (``x_ddot = T sin(phi)``), so the arm is along
    ``(cos phi, -sin phi)``.  The view is centred between the body and the goal and widens
    when they are far apart, so both stay visible.
    """

    def __init__(self, arm: float = 0.3, size: int = DEFAULT_SIZE) -> None:
        super().__init__(size)
        self.arm = float(arm)
        self._goal = Line2D([0.0], [0.0], marker="x", markersize=9, mew=2.5, color="#27ae60")
        self._body = Line2D([0.0, 0.0], [0.0, 0.0], color="#2c3e50", lw=4.0,
                            solid_capstyle="round")
        self._rotors = [Line2D([0.0, 0.0], [0.0, 0.0], color="#2980b9", lw=3.0)
                        for _ in range(2)]
        self._masts = [Line2D([0.0, 0.0], [0.0, 0.0], color="#2c3e50", lw=1.5)
                       for _ in range(2)]
        for artist in (self._goal, self._body, *self._rotors, *self._masts):
            self.ax.add_line(artist)

    def render(self, states: np.ndarray, goals: np.ndarray) -> np.ndarray:
        """``states (batch, 6)``, ``goals (batch, 2)`` -> ``(batch, size, size, 3)`` uint8."""
        states = _as_batch(states, 6, "states")
        goals = _as_batch(goals, 2, "goals")
        if goals.shape[0] != states.shape[0]:
            raise ValueError(f"goals: expected {states.shape[0]} rows, got {goals.shape[0]}")
        frames = np.empty((states.shape[0], self.size, self.size, 3), dtype=np.uint8)
        for i, ((x, z, phi, *_), (xg, zg)) in enumerate(zip(states, goals, strict=True)):
            arm_dir = np.array([math.cos(phi), -math.sin(phi)])
            up_dir = np.array([math.sin(phi), math.cos(phi)])
            centre = np.array([x, z])
            left, right = centre - self.arm * arm_dir, centre + self.arm * arm_dir
            self._body.set_data([left[0], right[0]], [left[1], right[1]])
            for end, rotor, mast in zip((left, right), self._rotors, self._masts, strict=True):
                hub = end + 0.08 * up_dir
                tips = (hub - 0.12 * arm_dir, hub + 0.12 * arm_dir)
                rotor.set_data([tips[0][0], tips[1][0]], [tips[0][1], tips[1][1]])
                mast.set_data([end[0], hub[0]], [end[1], hub[1]])
            self._goal.set_data([xg], [zg])
            mid = 0.5 * (centre + np.array([xg, zg]))
            half = max(1.0, 0.5 * math.hypot(x - xg, z - zg) + 2.0 * self.arm)
            self.ax.set_xlim(mid[0] - half, mid[0] + half)
            self.ax.set_ylim(mid[1] - half, mid[1] + half)
            frames[i] = self._frame()
        return frames
