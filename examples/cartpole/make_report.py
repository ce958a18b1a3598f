"""Write a markdown report of the cart-pole example from the files its commands wrote.

    python make_report.py --safe-set cartpole.json --verify verify.json \\
        --audit audit-bp.json audit-rm.json --run runs/cartpole-shac-bp --out report.md

Every number is read from those files (nothing is recomputed).  The safe set's certification
is printed at the top: a set "verified by sampling, not certified" is never presented as a
proof.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--safe-set", type=Path, required=True)
    p.add_argument("--verify", type=Path, required=True)
    p.add_argument("--audit", type=Path, nargs="+", default=[])
    p.add_argument("--run", type=Path, nargs="*", default=[])
    p.add_argument("--out", type=Path, default=Path("report.md"))
    args = p.parse_args()

    safe = json.loads(args.safe_set.read_text())
    verify = json.loads(args.verify.read_text())
    certification = safe.get("certification", "(no field: see the SafeSet rule)")
    lines = [f"# Safety report: task `{safe['task']}`", "",
             f"**Safe set certification: {certification}.**", ""]
    if certification != "certified":
        lines += ["> The set's RCI certificate rests on a linearisation remainder estimated from "
                  "samples: every verdict below is evidence from samples, not a proof.", ""]
    meta = safe.get("metadata", {})
    lines += ["## Safe set", "", f"- source: {safe.get('source', '')}",
              f"- enclosure: {meta.get('enclosure', '-')}",
              f"- generators: {len(safe['state_generators'][0])}, volume {verify['volume']:.4g} "
              f"({100 * (verify.get('state_box_fraction') or 0):.1f}% of the state box S)",
              f"- certificate margins: {meta.get('certificate_margins', '-')}",
              f"- verification: {'VERIFIED' if verify['verdict'] else 'VIOLATED'} on "
              f"{verify['num_states']} sampled states, {verify['num_violations']} violations, "
              f"worst margin {verify['worst_margin']}", "", "## Safeguard audits", "",
              "| safeguard | passed | " + " | ".join(f"P{i}" for i in range(1, 6))
              + " | safe set |", "|---" * 8 + "|"]
    for path in args.audit:
        audit = json.loads(path.read_text())["audit"]
        verdicts = {c["check"]: c for c in audit["checks"]}
        cells = []
        for prop in ("P1", "P2", "P3", "P4", "P5"):
            c = verdicts.get(prop)
            cells.append("-" if c is None else str(c.get("holds", c.get("outcome", "-"))))
        lines.append(f"| {audit['label']} | {audit['passed']} | " + " | ".join(cells)
                     + f" | {audit.get('safe_set', {}).get('certification', '-')} |")
    if args.run:
        lines += ["", "## Training runs", "",
                  "| run | algorithm | safeguard | interactions | final reward | interventions "
                  "| fallbacks | wall clock (s) | safe set |", "|---" * 9 + "|"]
    for run in args.run:
        result = json.loads((run / "result.json").read_text())
        cfg = result.get("config", {})
        final = result["curve"][-1]["reward"] if result.get("curve") else None
        lines.append(f"| {run.name} | {cfg.get('algo')} | {cfg.get('safeguard')} | "
                     f"{result['interactions']} | {final} | {result['interventions']} | "
                     f"{result['fallbacks']} | {result['wallclock'].get('total', 0):.1f} | "
                     f"{result.get('safe_set_certification', '-')} |")
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.out} (safe set: {certification})")


if __name__ == "__main__":
    main()
