#!/usr/bin/env bash
# GPU check (H100/H200), under 5 minutes: training clips/s per method at batch 32,
# 3x16x112x112, r2plus1d-10 and r2plus1d-18, in fp32, bf16 and bf16 + channels_last +
# torch.compile of the whole step (student, teacher, objective, as train.compile does;
# TRAIN_MODES="fp32 bf16-cl-compile" picks others, bf16-cl-compile compiling the student
# alone); evaluation windows/s; peak GPU memory; loader clips/s with the machine's cores
# (libjpeg-turbo workers) and with nvJPEG in the main process; nvJPEG vs CPU pixels;
# `ccl train` end to end (real loader, loop and logging on 240p stores made from H.264
# videos) against the step alone, with the GPU utilisation it saw (benchmarks/train_e2e.py).
# Prints a Markdown table (also written to $OUT/gpu_check.md when OUT is set; every step's
# output is appended to $OUT/gpu_check.log as it runs, so a cut-off run still reports).
#
#   bash benchmarks/gpu_check.sh            # needs a CUDA device; uses python3 (or $PYTHON)
#   QUICK=1 DEVICE=cpu bash benchmarks/gpu_check.sh   # smoke run of the script itself
#   QUICK=1 DEVICE=cpu TRAIN_MODES="fp32 bf16-cl-compile-step" COMPILE_BACKEND=aot_eager bash ...
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
DEVICE=${DEVICE:-cuda}
LOG=$(mktemp -d)
FULL=${OUT:+$OUT/gpu_check.log}; FULL=${FULL:-$LOG/all.log}
step() { local out=$1; shift; "$@" > "$out" 2>&1; local rc=$?; { echo "== $*"; cat "$out"; } >> "$FULL"; return $rc; }
if [ -n "${QUICK:-}" ]; then
  SHAPE=(--batch 2 --frames 4 --size 32 --steps 1 --warmup 1); ARCHS=(r2plus1d-10); MODES=(fp32)
  EVAL=(--windows 4 --batch 2 --frames 4 --size 32)
  E2E=(--videos 16 --frames 40 --batch 2 --clip-frames 4 --size 32 --steps 6 --warmup 2
       --workers 1 --precision fp32 --methods baseline)
else
  SHAPE=(--batch 32 --frames 16 --size 112 --steps 8 --warmup 2)
  ARCHS=(r2plus1d-10 r2plus1d-18); MODES=(fp32 bf16 bf16-cl-compile-step)
  EVAL=(--windows 512 --batch 64 --frames 16 --size 112)
  E2E=(--videos 48 --frames 125 --batch 32 --steps 30 --warmup 5 --precision bf16
       --workers "$(nproc)" --methods baseline,ccl-ai)
fi
[ -n "${TRAIN_MODES:-}" ] && read -ra MODES <<< "$TRAIN_MODES"
$PY -c "import torch; print('device:', torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu', '| torch', torch.__version__)" | tee "$LOG/device"

table="| arch | mode | method | step s | clips/s | vs baseline | peak GiB |\n|---|---|---|---|---|---|---|\n"
train_runs() {  # train_runs MODE...: every arch in each mode, rows appended to $table
  local mode arch out extra methods peak line m s r c
  for mode in "$@"; do
    [ -n "$mode" ] || continue
    for arch in "${ARCHS[@]}"; do
      extra=(--precision fp32); methods=baseline,ccl-a,ccl-i,ccl-ai
      case $mode in
        bf16) extra=(--precision bf16) ;;
        bf16-cl-compile) extra=(--precision bf16 --channels-last --compile); methods=baseline,ccl-ai ;;
        bf16-cl-compile-step) methods=baseline,ccl-ai
          extra=(--precision bf16 --channels-last --compile-step --compile-backend "${COMPILE_BACKEND:-inductor}") ;;
      esac
      out="$LOG/train_${arch}_${mode}"
      step "$out" $PY benchmarks/train_step.py --device "$DEVICE" --arch "$arch" "${SHAPE[@]}" \
        "${extra[@]}" --methods "$methods" || { echo "train_step failed: $arch $mode"; tail -5 "$out"; continue; }
      echo "done: $arch $mode ($SECONDS s)"
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
}
# eager modes first; compilation (the slowest, least certain step) runs last
EAGER=(); COMPILED=()
for m in "${MODES[@]}"; do if [[ $m == *compile* ]]; then COMPILED+=("$m"); else EAGER+=("$m"); fi; done
[ ${#EAGER[@]} -eq 0 ] || train_runs "${EAGER[@]}"

step "$LOG/eval" $PY benchmarks/evaluate.py --device "$DEVICE" "${EVAL[@]}" \
  --precision "$([ "$DEVICE" = cuda ] && echo bf16 || echo fp32)" || tail -5 "$LOG/eval"
echo "done: evaluation ($SECONDS s)"
loader="-"; loader_gpu="-"; pixels="-"
if [ -z "${QUICK:-}" ]; then
  step "$LOG/loader" $PY benchmarks/data_loading.py --workers "$(nproc)" --epochs 8 \
    || tail -5 "$LOG/loader"
  loader=$(grep '^pipeline=' "$LOG/loader" | tr '\n' ' ' || true)
  echo "done: CPU loader ($SECONDS s)"
  if [ "$DEVICE" = cuda ]; then
    step "$LOG/loader_gpu" $PY benchmarks/data_loading.py --workers 0 --decoder cuda --epochs 8 \
      || tail -5 "$LOG/loader_gpu"
    loader_gpu=$(grep '^pipeline=' "$LOG/loader_gpu" | tr '\n' ' ' || true)
    step "$LOG/pixels" $PY -m pytest -q -s tests/data/test_data_datasets.py -k cuda_decoder \
      || tail -5 "$LOG/pixels"
    pixels="$(grep -c 'nvJPEG vs CPU' "$LOG/pixels") clips compared, max mean diff $(sed -n \
      's/.*mean \([0-9.]*\) p99 \([0-9.]*\)/\1 \2/p' "$LOG/pixels" | sort -n | tail -1) (mean p99); \
      $(tail -1 "$LOG/pixels")"
    echo "done: GPU loader and pixels ($SECONDS s)"
  fi
fi

e2e="-"
step "$LOG/e2e" $PY benchmarks/train_e2e.py --device "$DEVICE" "${E2E[@]}" || tail -5 "$LOG/e2e"
e2e=$(grep '^method=' "$LOG/e2e" | tr '\n' ' ' || true)
echo "done: end-to-end training ($SECONDS s)"

[ ${#COMPILED[@]} -eq 0 ] || train_runs "${COMPILED[@]}"

report="$(cat "$LOG/device")\n\n${table}\nEvaluation: $(grep '^eval' "$LOG/eval" || echo '-')\n\nLoader, CPU decoding with $(nproc) workers: ${loader}\n\nLoader, nvJPEG in the main process: ${loader_gpu}\n\nnvJPEG vs CPU pixels: ${pixels}\n\nccl train end to end vs the step alone ($(head -1 "$LOG/e2e" 2>/dev/null || echo -)): ${e2e}\n"
printf "%b" "$report"
if [ -n "${OUT:-}" ]; then printf "%b" "$report" > "$OUT/gpu_check.md"; fi
