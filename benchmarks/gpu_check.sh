#!/usr/bin/env bash
# GPU check (H100/H200), under 5 minutes: training clips/s per method at batch 32,
# 3x16x112x112, r2plus1d-10 and r2plus1d-18, in fp32, bf16 and bf16 + channels_last +
# torch.compile; evaluation windows/s; peak GPU memory; loader clips/s with the machine's
# cores. Prints a Markdown table (also written to $OUT/gpu_check.md when OUT is set).
#
#   bash benchmarks/gpu_check.sh            # needs a CUDA device; uses python3 (or $PYTHON)
#   QUICK=1 DEVICE=cpu bash benchmarks/gpu_check.sh   # smoke run of the script itself
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
DEVICE=${DEVICE:-cuda}
LOG=$(mktemp -d)
if [ -n "${QUICK:-}" ]; then
  SHAPE=(--batch 2 --frames 4 --size 32 --steps 1 --warmup 1); ARCHS=(r2plus1d-10); MODES=(fp32)
  EVAL=(--windows 4 --batch 2 --frames 4 --size 32)
else
  SHAPE=(--batch 32 --frames 16 --size 112 --steps 8 --warmup 2)
  ARCHS=(r2plus1d-10 r2plus1d-18); MODES=(fp32 bf16 bf16-cl-compile)
  EVAL=(--windows 512 --batch 64 --frames 16 --size 112)
fi
$PY -c "import torch; print('device:', torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu', '| torch', torch.__version__)" | tee "$LOG/device"

table="| arch | mode | method | step s | clips/s | vs baseline | peak GiB |\n|---|---|---|---|---|---|---|\n"
for arch in "${ARCHS[@]}"; do
  for mode in "${MODES[@]}"; do
    extra=(--precision fp32); methods=baseline,ccl-a,ccl-i,ccl-ai
    case $mode in
      bf16) extra=(--precision bf16) ;;
      bf16-cl-compile) extra=(--precision bf16 --channels-last --compile); methods=baseline,ccl-ai ;;
    esac
    out="$LOG/train_${arch}_${mode}"
    $PY benchmarks/train_step.py --device "$DEVICE" --arch "$arch" "${SHAPE[@]}" "${extra[@]}" \
      --methods "$methods" > "$out" 2>&1 || { echo "train_step failed: $arch $mode"; tail -5 "$out"; continue; }
    peak=$(sed -n 's/^peak_gpu_memory_gib=//p' "$out"); peak=${peak:--}
    while read -r line; do
      m=$(sed -n 's/^method=\([^ ]*\).*/\1/p' <<<"$line")
      s=$(sed -n 's/.*median_s=\([^ ]*\).*/\1/p' <<<"$line")
      r=$(sed -n 's/.*ratio_to_baseline=\([^ ]*\).*/\1/p' <<<"$line")
      c=$(sed -n "s/^throughput method=$m clips_per_s=//p" "$out")
      table+="| $arch | $mode | $m | $s | $c | $(awk -v r="$r" 'BEGIN{printf "%.2f", 1/r}')x clips/s | $peak |\n"
    done < <(grep '^method=' "$out")
  done
done

$PY benchmarks/evaluate.py --device "$DEVICE" "${EVAL[@]}" --precision "$([ "$DEVICE" = cuda ] && echo bf16 || echo fp32)" \
  > "$LOG/eval" 2>&1 || tail -5 "$LOG/eval"
loader="-"
if [ -f benchmarks/data_loading.py ] && [ -z "${QUICK:-}" ]; then
  $PY benchmarks/data_loading.py --workers "$(nproc)" > "$LOG/loader" 2>&1 || tail -5 "$LOG/loader"
  loader=$(grep '^pipeline=ours' "$LOG/loader" | tail -1 || true)
fi

report="$(cat "$LOG/device")\n\n${table}\nEvaluation: $(grep '^eval' "$LOG/eval" || echo '-')\n\nLoader ($(nproc) cores): ${loader}\n"
printf "%b" "$report"
if [ -n "${OUT:-}" ]; then printf "%b" "$report" > "$OUT/gpu_check.md"; cp -r "$LOG" "$OUT/logs" 2>/dev/null || true; fi
