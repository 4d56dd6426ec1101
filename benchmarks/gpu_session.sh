#!/usr/bin/env bash
# One GPU session's measurements in one run (about 11 minutes on an H100/H200):
#   1. benchmarks/gpu_check.sh: training step per method and mode, evaluation, loaders,
#      `ccl train` end to end against the step alone (cut off after 6 minutes);
#   2. `ccl demo --device cuda`: the GPU scale, seeds 1-5 side by side, wall clock and table
#      (cut off after 7 minutes; the goal is at most 5).
# Everything lands in $OUT (gpu_check.md / .log, demo_gpu.log, demo_gpu/); record the
# figures with the device name in a dated record in docs/results/ and docs/PERFORMANCE.md.
#
#   OUT=/some/folder bash benchmarks/gpu_session.sh
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export OUT=${OUT:-$(mktemp -d)} PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
echo "results in $OUT"
timeout 360 bash benchmarks/gpu_check.sh | tail -n 40
echo "== ccl demo --device cuda"
start=$SECONDS
timeout 420 "$PY" -m ccl.cli demo --device cuda --out "$OUT/demo_gpu" > "$OUT/demo_gpu.log" 2>&1
echo "exit $? after $((SECONDS - start)) s"
tail -n 20 "$OUT/demo_gpu.log"
