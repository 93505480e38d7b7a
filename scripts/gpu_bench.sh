#!/usr/bin/env bash
# cta2mbf on a GPU, next to PyTorch + CUDA on the same GPU: the generator at 384x384x160 ngf 32
# (inference and one training step, in train and in eval norm mode) and the segmentation U-Net
# at the reference's 256^3 (base_n_filter 6), on --device wgpu and --device vulkan, with the
# peak GPU memory of each run (nvidia-smi sampled every 50 ms, minus the idle baseline).
#
# Build here, run there (the GPU machine has no Rust toolchain):
#   cargo build --release --features wgpu,vulkan
#   mkdir -p .gpu && cp target/release/cta2mbf .gpu/      # .gpu/ ignored by git, carried to the machine
#   scripts/gpu_bench.sh .gpu/cta2mbf OUT                  # there, with the Vulkan loader installed
# A tiny smoke run on any Vulkan device (e.g. lavapipe):
#   SIZE=16,16,16 NGF=4 SEG_SIZE=16,16,16 SEG_NGF=2 REPS=1 scripts/gpu_bench.sh target/release/cta2mbf /tmp/gpu_bench
set -uo pipefail
BIN=${1:?usage: scripts/gpu_bench.sh CTA2MBF_BINARY [OUT_DIR]}
OUT=${2:-/tmp/gpu_bench}
SIZE=${SIZE:-384,384,160}
NGF=${NGF:-32}
SEG_SIZE=${SEG_SIZE:-256,256,256}
SEG_NGF=${SEG_NGF:-6}
REPS=${REPS:-3}
mkdir -p "$OUT"
HERE=$(cd "$(dirname "$0")" && pwd)

# Run "$@" (output to $OUT/$name.txt) while sampling GPU memory; append a summary line.
measure() {
  local name=$1; shift
  local base="" smi=""
  if command -v nvidia-smi >/dev/null; then
    base=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1)
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 50 > "$OUT/$name.mem" 2>/dev/null &
    smi=$!
  fi
  local start=$(date +%s.%N)
  "$@" > "$OUT/$name.txt" 2>&1
  local rc=$?
  local wall=$(echo "$(date +%s.%N) - $start" | bc)
  local peak="n/a (no nvidia-smi)"
  if [ -n "$smi" ]; then
    kill "$smi" 2>/dev/null; wait "$smi" 2>/dev/null
    peak="$(( $(sort -n "$OUT/$name.mem" | tail -1) - base )) MiB"
  fi
  echo "== $name (exit $rc, ${wall}s wall, peak GPU memory $peak)" | tee -a "$OUT/summary.txt"
  grep -E "infer|train_step|error|torch" "$OUT/$name.txt" | sed 's/^/   /' | tee -a "$OUT/summary.txt"
}

: > "$OUT/summary.txt"
for dev in wgpu vulkan; do
  for mode in train eval; do
    measure "generator_${dev}_${mode}" "$BIN" bench --device "$dev" --size "$SIZE" --ngf "$NGF" --norm-mode "$mode" --repeats "$REPS"
  done
  measure "segmentation_${dev}" "$BIN" bench --device "$dev" --network segmentation --size "$SEG_SIZE" --ngf "$SEG_NGF" --norm-mode train --repeats "$REPS"
done
if python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  IFS=, read -r X Y Z <<< "$SIZE"
  for mode in train eval; do
    measure "torch_cuda_${mode}" python3 "$HERE/torch_generator.py" "$X" "$Y" "$Z" "$NGF" "$REPS" "$mode" cuda
  done
else
  echo "== torch: no CUDA here, skipped" | tee -a "$OUT/summary.txt"
fi
echo "summary: $OUT/summary.txt"
