#!/usr/bin/env bash
# Issue 15's GPU figures in one device-tool call (≈ 3–5 min): inversion speed at 256 px (eager
# and compiled/CUDA-graph steps, batch 1 and 16, vs the official-equivalent loop on the same
# GPU) and the bundled model's 100-step inversion and quick edit through idinvert.demo.service
# (Gradio is not on the device: the server part is measured on CPUs only).
# Here, first: python training/gpu_prepare.py   (the bundled model needs VGG16 there)
# Device tool: run(command="bash benchmarks/gpu_bench.sh", carry=[".gpu"], timeout_s=600)
# Back: $OUT/session.log and bench.txt (every figure). Settings: DEVICE (cuda),
# INVERSION_ARGS (the inversion benchmark's options), DEMO_ARGS (demo_latency's).
set -uo pipefail
DEVICE=${DEVICE:-cuda}
INVERSION_ARGS=${INVERSION_ARGS:---batch 16 --check-images 0 --compile --rounds 3}
DEMO_ARGS=${DEMO_ARGS:---repeats 30}
source "$(dirname "$0")/../training/gpu_env.sh"
# shellcheck disable=SC2086  # the ARGS are option lists
stage inversion "$PY" benchmarks/inversion.py --device "$DEVICE" $INVERSION_ARGS
# shellcheck disable=SC2086
stage demo "$PY" benchmarks/demo_latency.py --device "$DEVICE" --part library $DEMO_ARGS
cat "$WORK/inversion.out" "$WORK/demo.out" > "$OUT/bench.txt"
