#!/usr/bin/env bash
# Safety gate for a team's own task and safeguard (docs/ci-gating.md).
# Exit status: 0 = gate passed; 1 = a safety check failed; 2 = bad input (unknown task, bad file).
set -euo pipefail
TASK=${SAFETY_TASK:-cartpole_task:CARTPOLE}          # your TaskSpec as module:ATTR
SAFEGUARD=${SAFETY_SAFEGUARD:-bp}                     # bp, rm or your module:Class
SAMPLES=${SAFETY_SAMPLES:-256}                        # audited states
REQUIRE=${SAFETY_REQUIRE:-}                           # e.g. "P3 P4": must hold besides P1, P2
REQUIRE_CERTIFIED=${SAFETY_REQUIRE_CERTIFIED:-0}      # 1: refuse sets verified only by sampling
OUT=${SAFETY_OUT:-safety}
mkdir -p "$OUT"

# 1. the task's safe set: computed by the RCI program and verified (exit 1 on a violation)
safegbpo safe-set compute --task "$TASK" --out "$OUT/safe_set.json" \
    --samples "$SAMPLES" --json "$OUT/verify.json"
# 2. the safeguard against P1-P5 on that set (exit 1 unless P1, P2 and --require hold)
# shellcheck disable=SC2086
safegbpo audit --task "$TASK" --safeguard "$SAFEGUARD" --safe-set "$OUT/safe_set.json" \
    --samples "$SAMPLES" --json "$OUT/audit.json" ${REQUIRE:+--require $REQUIRE}
# 3. policy on the JSON: the audit passed, and (optionally) the set is certified
python - "$OUT" "$REQUIRE_CERTIFIED" <<'PY'
import json, sys
out, require_certified = sys.argv[1], sys.argv[2] == "1"
audit = json.load(open(f"{out}/audit.json"))["audit"]
verify = json.load(open(f"{out}/verify.json"))
print(f"safe set: {verify['certification']}; audit passed: {audit['passed']}")
if not (audit["passed"] and verify["verdict"]):
    sys.exit(1)
if require_certified and verify["certification"] != "certified":
    print("gate: the safe set is not certified (verified by sampling only)")
    sys.exit(1)
PY
