#!/usr/bin/env bash
# One-shot GPU measurement (issue "Performance where users run", GPU part): builds mim, then
# times on the wgpu backend, in one `mim bench` run, the stage-1 step of each GPU gradient path
# and the step a default `mim train` pays (stage1_step[user], metrics included) at d = 4096,
# n = 65 536, m = 1024 (`--sizes gpu`), next to the same-run SGEMM, and writes one JSON.
#
#   bash benches/gpu.sh [OUT.json] [PEAK_GFLOPS]     # ≈ 3–5 min on a GPU machine, build included
#
# PEAK_GFLOPS (optional) is the GPU's FP32 peak from its data sheet (e.g. 67 000 for an H200's
# non-tensor FP32), which adds each item's fraction of peak. Exits non-zero if no adapter exists.
# MIM_GPU_SIZES=tiny runs the same script as a smoke test (e.g. on a software Vulkan driver).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-gpu-bench.json}"
peak="${2:-}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
cargo build --release -p mim-cli
mim="$CARGO_TARGET_DIR/release/mim"
"$mim" --version
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || true
args=(bench --backend wgpu --sizes "${MIM_GPU_SIZES:-gpu}" --reps 3 --json "$out")
if [ -n "$peak" ]; then args+=(--peak-gflops "$peak"); fi
timeout 600 "$mim" "${args[@]}"
echo "wrote $out"
