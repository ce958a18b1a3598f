"""Figures of the compliance report (matplotlib Agg, PNG).

* :func:`plot_learning_curves` — seed-mean evaluation curves, ours (solid) against the paper's
  archived curves (dashed), one figure per registered task and comparison (Tables 2/3 and the
  SHAC modifications of Table 4; the energy system's archived curves are the journal
  version's);
* :func:`plot_campaign_curves` — per task and (algorithm, variant), the campaign's seed-mean
  curves with their per-step 95% bootstrap band (own sets solid, paper's sets dash-dotted) over
  the archived seed mean (dashed) on the same axes;
* :func:`plot_pendulum_safeguards` — the pendulum's safe state set in ``(theta, theta_dot)``
  coloured by the width of the safe torque interval, and, at one state, every safeguard's map
  ``a -> g(a)`` against the safe interval;
* :func:`plot_quadrotor_safeguards` — the quadrotor's 2-D safe action set ``A ∩ A_s(s)`` at one
  state with raw actions and their images under every safeguard.

The safe action sets are drawn from the independent oracle (:mod:`spec.checks.oracle`), not from the
safeguards.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from safegbpo.safeguards.variants import map_variants, variant_labels  # noqa: E402
from safegbpo.tasks import task_names  # noqa: E402
from spec.checks.oracle import SafeActionOracle  # noqa: E402
from spec.checks.sampling import sample_safe_states  # noqa: E402

__all__ = ["plot_campaign_curves", "plot_learning_curves", "plot_pendulum_safeguards",
           "plot_quadrotor_safeguards"]

_COLOURS = {
    "No Safeguard": "black", "BP": "tab:blue", "RM": "tab:orange",
    "BP Regularisation": "tab:cyan", "RM Regularisation": "tab:red",
    "RM Passthrough Gradient": "tab:green", "RM Hyperbolic": "tab:purple",
    "RM Hyperbolic and Regularisation": "tab:pink", "RM Orthogonal": "tab:brown",
}

Key = tuple[str, str, str]


def _curve(cell: Mapping[str, Any] | None) -> tuple[np.ndarray, np.ndarray] | None:
    if not cell:
        return None
    steps, mean = cell.get("eval_steps"), cell.get("mean_curve")
    if not steps or not mean or len(steps) != len(mean):
        return None
    return np.asarray(steps, dtype=float), np.asarray(mean, dtype=float)


def _panel(ax, keys: Sequence[Key], ours: Mapping[Key, Any], paper: Mapping[Key, Any],
           title: str) -> bool:
    drawn = False
    for key in keys:
        colour = _COLOURS.get(key[2], None)
        for source, style, width in ((paper, "--", 1.0), (ours, "-", 1.8)):
            c = _curve(source.get(key))
            if c is None:
                continue
            ax.plot(c[0], c[1], style, color=colour, lw=width,
                    label=f"{key[2]} ({'ours' if source is ours else 'paper'})")
            drawn = True
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("interactions", fontsize=8)
    ax.set_ylabel("evaluation reward", fontsize=8)
    ax.tick_params(labelsize=7)
    if drawn:
        ax.legend(fontsize=6)
    return drawn


def plot_learning_curves(ours: Mapping[Key, Mapping[str, Any]],
                         paper: Mapping[Key, Mapping[str, Any]], out_dir: Path) -> list[Path]:
    """Learning-curve figures; cells are dicts with ``eval_steps`` and ``mean_curve``.

    Returns the written paths (none when neither source has a curve)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for task in task_names():
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
        any_drawn = False
        for ax, algo in zip(axes, ("shac", "ppo", "sac"), strict=True):
            keys = [(task, algo, v) for v in ("No Safeguard", "BP", "RM")]
            any_drawn |= _panel(ax, keys, ours, paper, f"{task} {algo.upper()} (Tables 2-3)")
        fig.tight_layout()
        if any_drawn:
            path = out_dir / f"learning_curves_{task}.png"
            fig.savefig(path, dpi=110)
            written.append(path)
        plt.close(fig)
        fig, ax = plt.subplots(figsize=(8, 4.2))
        keys = [(task, "shac", v) for v in variant_labels()]
        if _panel(ax, keys, ours, paper, f"{task} SHAC: safeguards and modifications "
                                         "(Tables 4-5)"):
            fig.tight_layout()
            path = out_dir / f"learning_curves_{task}_shac_modifications.png"
            fig.savefig(path, dpi=110)
            written.append(path)
        plt.close(fig)
    return written


_SET_STYLES = {"own": ("-", "ours, own sets"), "paper": ("-.", "ours, paper's sets")}


def plot_campaign_curves(cells: Sequence[Mapping[str, Any]],
                         archive: Mapping[Key, Mapping[str, Any]], out_dir: Path) -> list[Path]:
    """One figure per task of the campaign's ``cells`` (:func:`spec.paper.campaign.
    build_campaign`: ``eval_steps``, ``mean_curve``, ``ci_low_curve``, ``ci_high_curve``,
    ``safe_set_kind``), one panel per (algorithm, variant): ours with the band, the archived
    seed mean (``archive``, may be empty: then ours alone, and the title says so).

    Returns the written paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    order = variant_labels()
    for task in task_names():
        mine = [c for c in cells if c["task"] == task and _curve(c) is not None]
        if not mine:
            continue
        panels = sorted({(c["algo"], c["variant"]) for c in mine},
                        key=lambda k: (k[0], order.index(k[1]) if k[1] in order else 99))
        fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6),
                                 squeeze=False)
        for ax, (algo, variant) in zip(axes[0], panels, strict=True):
            colour = _COLOURS.get(variant)
            archived = _curve(archive.get((task, algo, variant)))
            if archived is not None:
                ax.plot(archived[0], archived[1], "--", color="grey", lw=1.2,
                        label="archived (paper), seed mean")
            for cell in mine:
                if (cell["algo"], cell["variant"]) != (algo, variant):
                    continue
                style, name = _SET_STYLES.get(cell.get("safe_set_kind", "own"),
                                              (":", "ours, other set"))
                steps, mean = _curve(cell)  # type: ignore[misc]
                ax.plot(steps, mean, style, color=colour, lw=1.8,
                        label=f"{name} ({cell.get('runs')} seeds, "
                              f"{cell.get('interactions')} int.)")
                low, high = cell.get("ci_low_curve"), cell.get("ci_high_curve")
                if low and high and len(low) == len(steps):
                    ax.fill_between(steps, low, high, color=colour, alpha=0.18, lw=0)
            ax.set_yscale("symlog", linthresh=10.0)
            ax.set_title(f"{task} {algo.upper()} {variant}"
                         + ("" if archived is not None else " (no archived curve)"), fontsize=9)
            ax.set_xlabel("interactions", fontsize=8)
            ax.set_ylabel("evaluation reward (symlog)", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.legend(fontsize=6)
        fig.tight_layout()
        path = out_dir / f"campaign_curves_{task}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def _safeguards_at(task: str, state: torch.Tensor, actions: torch.Tensor, safe_set: Any
                   ) -> dict[str, np.ndarray | Exception]:
    """Outputs of every built-in variant for ``actions (K, d)`` at one ``state (n,)``."""
    from safegbpo.envs import make_vec
    from safegbpo.safeguards import make_safeguard

    K = actions.shape[0]
    env = make_vec(task, num_envs=K, seed=0, safe_set=safe_set)
    env.reset(options={"state": state.expand(K, -1).clone()})
    out: dict[str, np.ndarray | Exception] = {}
    for variant in map_variants():
        try:
            guard = make_safeguard(str(variant.safeguard), env, **variant.options)
            with torch.no_grad():
                safe = guard(actions.to(env.dtype), env.state)
                out[variant.label] = safe.double().cpu().numpy()
        except Exception as err:  # noqa: BLE001 - a broken safeguard must not break the report
            out[variant.label] = err
    return out


def _support_polygon(oracle: SafeActionOracle, i: int, num: int = 72) -> np.ndarray | None:
    """Vertices (ordered) of the 2-D set ``A ∩ A_s(s_i)`` from support points."""
    found = []
    for angle in np.linspace(0, 2 * np.pi, num, endpoint=False):
        p = oracle.support_point(i, np.array([np.cos(angle), np.sin(angle)]))
        if p is None:
            return None
        found.append(p)
    pts = np.asarray(found)
    centre = pts.mean(axis=0)
    order = np.argsort(np.arctan2(pts[:, 1] - centre[1], pts[:, 0] - centre[0]))
    return pts[order]


def plot_pendulum_safeguards(out_dir: Path, safe_set: Any = None, seed: int = 0) -> Path:
    """Pendulum: safe state set and the safeguards' maps at one state (module docstring)."""
    from safegbpo.envs import make_vec

    out_dir.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    env = make_vec("pendulum", num_envs=1, seed=seed, safe_set=safe_set)
    zono = env.safe_set.state
    verts = zono.vertices_2d()[0].detach().numpy()
    states = sample_safe_states(env, 160, gen, vertex_fraction=0.1).double()
    oracle = SafeActionOracle(env, states)
    width_list = []
    for i in range(states.shape[0]):
        top = oracle.support_point(i, np.array([1.0]))
        bottom = oracle.support_point(i, np.array([-1.0]))
        width_list.append(np.nan if top is None or bottom is None
                          else float(top[0] - bottom[0]))
    widths = np.asarray(width_list)
    # the state of the right panel: the one with the narrowest non-trivial safe interval
    pick = int(np.nanargmin(np.where(widths > 0.05, widths, np.nan)))
    state = states[pick]
    lo_point = oracle.support_point(pick, np.array([-1.0]))
    hi_point = oracle.support_point(pick, np.array([1.0]))
    assert lo_point is not None and hi_point is not None  # the pick has a finite width
    lo, hi = float(lo_point[0]), float(hi_point[0])
    raw = torch.linspace(-1.5, 1.5, 121, dtype=torch.float64).unsqueeze(1)
    mapped = _safeguards_at("pendulum", state, raw, safe_set)

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 4.6))
    low, high = (t.tolist() for t in env.model.state_bounds(dtype=torch.float64))
    ax0.add_patch(plt.Rectangle((low[0], low[1]), high[0] - low[0], high[1] - low[1],
                                fill=False, ls=":", color="grey", label="feasible box S"))
    ax0.fill(verts[:, 0], verts[:, 1], alpha=0.15, color="tab:green", label="safe set S_s")
    sc = ax0.scatter(states[:, 0], states[:, 1], c=widths, s=12, cmap="viridis",
                     label="audited states")
    fig.colorbar(sc, ax=ax0, label="width of the safe torque interval")
    ax0.plot(state[0], state[1], "r*", ms=14, label="state of the right panel")
    pad = 0.15 * (verts.max(axis=0) - verts.min(axis=0))
    ax0.set_xlim(verts[:, 0].min() - pad[0], verts[:, 0].max() + pad[0])
    ax0.set_ylim(verts[:, 1].min() - pad[1], verts[:, 1].max() + pad[1])
    ax0.set_xlabel("theta [rad]")
    ax0.set_ylabel("theta_dot [rad/s]")
    source = (env.safe_set.source or "project")[:60]
    ax0.set_title(f"pendulum safe state set ({source})", fontsize=9)
    ax0.legend(fontsize=7, loc="upper right")

    ax1.axhspan(lo, hi, color="tab:green", alpha=0.15, label="safe actions A ∩ A_s(s)")
    ax1.axvspan(-1, 1, color="grey", alpha=0.07, label="feasible box A")
    ax1.plot(raw[:, 0], raw[:, 0], ":", color="grey", lw=1, label="identity")
    for label, values in mapped.items():
        if isinstance(values, Exception):
            continue
        ax1.plot(raw[:, 0], values[:, 0], color=_COLOURS.get(label), lw=1.6, label=label)
    ax1.set_xlabel("raw action a")
    ax1.set_ylabel("safe action g(a)")
    ax1.set_title(f"safeguards at state ({state[0]:.3f}, {state[1]:.3f})", fontsize=9)
    ax1.legend(fontsize=7)
    fig.tight_layout()
    path = out_dir / "safe_set_pendulum.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_quadrotor_safeguards(out_dir: Path, safe_set: Any = None, seed: int = 0) -> Path:
    """Quadrotor: the 2-D safe action set at one state, raw vs safe actions per safeguard."""
    from safegbpo.envs import make_vec

    out_dir.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    env = make_vec("quadrotor", num_envs=1, seed=seed, safe_set=safe_set)
    states = sample_safe_states(env, 24, gen, vertex_fraction=0.5).double()
    oracle = SafeActionOracle(env, states)
    # the state whose safe action set is smallest (clearest picture of the mapping; extreme
    # states of S_s have the smallest sets)
    areas = []
    polys = []
    for i in range(states.shape[0]):
        poly = _support_polygon(oracle, i, num=24)
        polys.append(poly)
        if poly is None:
            areas.append(np.inf)
            continue
        x, y = poly[:, 0], poly[:, 1]
        areas.append(0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))
    pick = int(np.argmin(areas))
    poly = _support_polygon(oracle, pick)
    state = states[pick]
    g = torch.linspace(-1.2, 1.2, 7, dtype=torch.float64)
    raw = torch.cartesian_prod(g, g)
    mapped = _safeguards_at("quadrotor", state, raw, safe_set)
    n = len(mapped)
    fig, axes = plt.subplots(1, n, figsize=(3.3 * n, 3.6), squeeze=False)
    for ax, (label, values) in zip(axes[0], mapped.items(), strict=True):
        ax.add_patch(plt.Rectangle((-1, -1), 2, 2, fill=False, ls=":", color="grey"))
        if poly is not None:
            ax.fill(poly[:, 0], poly[:, 1], color="tab:green", alpha=0.2)
        if isinstance(values, Exception):
            ax.set_title(f"{label}: failed", fontsize=8)
            continue
        ax.scatter(raw[:, 0], raw[:, 1], s=6, color="grey")
        for (x0, y0), (x1, y1) in zip(raw.numpy(), values, strict=True):
            ax.annotate("", (x1, y1), (x0, y0),
                        arrowprops={"arrowstyle": "->", "lw": 0.6,
                                    "color": _COLOURS.get(label, "k")})
        ax.scatter(values[:, 0], values[:, 1], s=8, color=_COLOURS.get(label, "k"))
        ax.set_xlim(-1.3, 1.3)
        ax.set_ylim(-1.3, 1.3)
        ax.set_aspect("equal")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("a_T (thrust)", fontsize=8)
        ax.set_ylabel("a_phi (roll)", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle("quadrotor: safe action set A ∩ A_s(s) (green) at state "
                 f"{np.round(state.numpy(), 3).tolist()}; raw (grey) -> safe actions", fontsize=9)
    fig.tight_layout()
    path = out_dir / "safe_set_quadrotor.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
