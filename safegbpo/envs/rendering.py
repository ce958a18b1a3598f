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

__all__ = ["Scene", "PendulumScene", "QuadrotorScene", "EnergyScene", "DEFAULT_SIZE"]

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


class EnergyScene(Scene):
    """Household energy system (SPEC §10): one frame per env showing its episode so far.

    Unlike the other scenes it is a rectangular multi-panel figure, so it builds its own figure
    instead of :class:`Scene`'s square single axes (``ax`` is the first panel).

    Four panels over the days since the episode's start: indoor temperature ``t_in`` with its
    bounds (shaded) and comfort target (dashed); return and outside temperatures ``t_ret``,
    ``t_out``; the battery's state of charge; the buying price (steps) and the grid power ``p``
    of every step (right axis).  The title names the start hour and the current values.
    ``render`` returns ``uint8`` ``(batch, height, width, 3)``.
    """

    def __init__(self, episode_length: int = 720,
                 state_low: tuple[float, ...] = (0.0, 18.0, 10.0),
                 state_high: tuple[float, ...] = (10.0, 24.0, 100.0), comfort: float = 21.0,
                 width: int = 480, height: int = 400) -> None:
        # (Scene.__init__ is not called: it would build the square single-axes figure)
        if int(width) != width or int(height) != height or min(width, height) < 64:
            raise ValueError(f"width and height must be integers >= 64 pixels, got "
                             f"{width!r} x {height!r}")
        self.width, self.height = int(width), int(height)
        self.low, self.high = np.asarray(state_low, float), np.asarray(state_high, float)
        self.days = max(int(episode_length), 1) / 24.0
        dpi = 80
        self.figure = Figure(figsize=(self.width / dpi, self.height / dpi), dpi=dpi,
                             facecolor=_BACKGROUND)
        self.canvas = FigureCanvasAgg(self.figure)
        axes = self.figure.subplots(4, 1, sharex=True,
                                    gridspec_kw={"hspace": 0.12, "left": 0.12, "right": 0.88,
                                                 "top": 0.92, "bottom": 0.09})
        self.ax_in, self.ax_temp, self.ax_soc, self.ax_price = axes
        self.ax = self.ax_in
        self.size = max(self.width, self.height)
        small = {"fontsize": 7}
        for ax in axes:
            ax.tick_params(labelsize=6, length=2)
            ax.set_xlim(0.0, self.days)
            ax.grid(True, lw=0.3, alpha=0.5)
        lo, hi = self.low[1], self.high[1]
        self.ax_in.axhspan(lo, hi, color="#eafaf1", zorder=0)
        self.ax_in.axhline(comfort, color="#27ae60", lw=0.8, ls="--")
        self.ax_in.set_ylim(lo - 0.5, hi + 0.5)
        self.ax_in.set_ylabel("t_in [°C]", **small)
        self._t_in = self.ax_in.plot([], [], color="#c0392b", lw=1.0)[0]
        self._t_ret = self.ax_temp.plot([], [], color="#e67e22", lw=0.9, label="t_ret")[0]
        self._t_out = self.ax_temp.plot([], [], color="#2980b9", lw=0.9, label="t_out")[0]
        self.ax_temp.set_ylabel("°C", **small)
        self.ax_temp.legend(loc="upper right", fontsize=6, ncol=2, frameon=False)
        self.ax_soc.axhspan(self.low[0], self.high[0], color="#f4f6f7", zorder=0)
        self.ax_soc.set_ylim(self.low[0] - 0.5, self.high[0] + 0.5)
        self.ax_soc.set_ylabel("soc", **small)
        self._soc = self.ax_soc.plot([], [], color="#8e44ad", lw=1.0)[0]
        self._price = self.ax_price.plot([], [], color="#7f8c8d", lw=0.9, drawstyle="steps-post")[0]
        self.ax_price.set_ylabel("price", **small)
        self.ax_price.set_xlabel("days since the episode's start", **small)
        self.ax_power = self.ax_price.twinx()
        self.ax_power.tick_params(labelsize=6, length=2)
        self.ax_power.axhline(0.0, color="#cccccc", lw=0.6)
        self.ax_power.set_ylim(-2.5, 4.5)
        self.ax_power.set_ylabel("grid power p", color="#16a085", **small)
        self._power = self.ax_power.plot([], [], color="#16a085", lw=0.6)[0]
        self._title = self.figure.suptitle("", fontsize=7)

    def render(self, trajectories: np.ndarray, exogenous: np.ndarray, power: np.ndarray,
               start_hours: np.ndarray) -> np.ndarray:
        """Frames of ``batch`` episodes.

        Args:
            trajectories: ``(batch, T + 1, 3)`` states from the episode's start.
            exogenous: ``(batch, T + 1, 4)`` load, PV, outside temperature, price per hour.
            power: ``(batch, T)`` grid power of each step.
            start_hours: ``(batch,)`` hour of the year the episodes started at.
        """
        traj = np.asarray(trajectories, dtype=np.float64)
        exo = np.asarray(exogenous, dtype=np.float64)
        power = np.asarray(power, dtype=np.float64)
        if traj.ndim != 3 or traj.shape[2] != 3 or traj.shape[1] < 1:
            raise ValueError(f"trajectories: expected shape (batch, T + 1, 3), got {traj.shape}")
        batch, steps = traj.shape[0], traj.shape[1] - 1
        if exo.shape != (batch, steps + 1, 4) or power.shape != (batch, steps):
            raise ValueError(f"exogenous / power: expected {(batch, steps + 1, 4)} and "
                             f"{(batch, steps)}, got {exo.shape} and {power.shape}")
        if not (np.isfinite(traj).all() and np.isfinite(exo).all() and np.isfinite(power).all()):
            raise ValueError("trajectories / exogenous / power contain NaN/inf")
        t = np.arange(steps + 1) / 24.0
        price_max = max(0.6, 1.1 * float(exo[..., 3].max()))
        self.ax_price.set_ylim(0.0, price_max)
        frames = np.empty((batch, self.height, self.width, 3), dtype=np.uint8)
        for i in range(batch):
            self._t_in.set_data(t, traj[i, :, 1])
            self._t_ret.set_data(t, traj[i, :, 2])
            self._t_out.set_data(t, exo[i, :, 2])
            low = min(-12.0, float(exo[i, :, 2].min()) - 2.0)
            high = max(50.0, float(traj[i, :, 2].max()) + 5.0)
            self.ax_temp.set_ylim(low, high)
            self._soc.set_data(t, traj[i, :, 0])
            self._price.set_data(t, exo[i, :, 3])
            self._power.set_data(t[:-1] + 0.5 / 24.0, power[i])
            soc, t_in, t_ret = traj[i, -1]
            self._title.set_text(f"env {i}: start hour {int(start_hours[i])}, step {steps}   "
                                 f"soc {soc:.2f}  t_in {t_in:.2f} °C  t_ret {t_ret:.1f} °C")
            frames[i] = self._frame()
        return frames
