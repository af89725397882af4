#!/usr/bin/env bash
# One device-tool call that retrains the bundled model on a GPU (issue 12): the committed
# generator continues with the renderer-as-teacher recipe on CUDA, then encoder (warm start),
# export, boundaries and `idinvert eval` (float32, no TF32) run there too. What a CPU session
# needs to judge and ship the result comes back under $OUT, each part as soon as it exists, so a
# call cut short still returns what it finished:
#
#   session.log            every stage's timing and output tail
#   gan_ema.safetensors    the continued generator (G_ema, float32) right after the GAN stage
#   gan_d.safetensors      its discriminator (float32): a later continuation need not start
#                          one from scratch (a fresh D costs a CPU restart ~50 kimg of quality)
#   encoder.safetensors    the model directory's encoder (13.5 MiB; too big to share a tar)
#   model.tar              the rest of the model directory (config, generator, classifier,
#                          boundaries, reports, eval.json, card, sample grid); written after
#                          the first export and again after the boundaries and the eval
#   logs.tar               log.jsonl files, last sample grids, eval table
#
# Here, first: python training/gpu_prepare.py   (writes the ignored .gpu/: VGG16 + lpips heads)
# Then the device tool, with carry [".gpu"] and a timeout of 600 s:
#   bash training/gpu_session.sh
# Settings (environment): GAN_MINUTES (default 3), ENC_KIMG (30), BOUNDARY_SAMPLES (20000),
# SELECT_SAMPLES (160), EVAL_N (200), GEN_N (5000), DEVICE (cuda), WORKERS (CPU cores - 2).
# Back here: training/README_TRAINING.md, "A GPU session", says how to check and ship it.
set -uo pipefail
GAN_MINUTES=${GAN_MINUTES:-3}
ENC_KIMG=${ENC_KIMG:-30}
BOUNDARY_SAMPLES=${BOUNDARY_SAMPLES:-20000}
SELECT_SAMPLES=${SELECT_SAMPLES:-160}
EVAL_N=${EVAL_N:-200}
GEN_N=${GEN_N:-5000}
DEVICE=${DEVICE:-cuda}
WORKERS=${WORKERS:-$(($(nproc) > 3 ? $(nproc) - 2 : 1))}
START=hub/bundled/faces64
source "$(dirname "$0")/gpu_env.sh"
bundle_logs() {
  (cd "$WORK" && tar -cf "$OUT/logs.tar" --ignore-failed-read ./*.out gan/log.jsonl \
    enc/log.jsonl eval.json \
    $(ls gan/samples/grid_*.png 2>/dev/null | tail -n 1) \
    $(ls enc/samples/grid_*.png 2>/dev/null | tail -n 1) 2> /dev/null)
}
trap bundle_logs EXIT

log "device $DEVICE, $WORKERS render workers"

stage gan "$PY" -m idinvert.training.train_cli gan --out "$WORK/gan" --init-generator "$START" \
  --device "$DEVICE" --teacher-weight 1 --teacher-perceptual 1 --style-mixing 0.5 \
  --mapping-lr-scale 10 --d-warmup-kimg 10 --kimg 100000 --max-minutes "$GAN_MINUTES" \
  --checkpoint-minutes 1000 --sample-every 2000 --threads 2 --workers "$WORKERS" --no-progress \
  || exit 1
"$PY" - "$WORK/gan" "$OUT" <<'PY' || exit 1
import sys
from pathlib import Path
from safetensors.torch import save_file
from idinvert.training.gan import CHECKPOINT_FILE, export_generator, load_checkpoint
run, out = Path(sys.argv[1]), Path(sys.argv[2])
G = export_generator(run)
save_file({k: v.contiguous() for k, v in G.state_dict().items()}, str(out / "gan_ema.safetensors"))
D = load_checkpoint(run / CHECKPOINT_FILE)["D"]
save_file({k: v.contiguous() for k, v in D.items()}, str(out / "gan_d.safetensors"))
PY
kimg=$(tail -n 1 "$WORK/gan/log.jsonl" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["kimg"])')
log "GAN: $kimg kimg in $GAN_MINUTES min on $DEVICE"

stage encoder "$PY" -m idinvert.training.train_cli encoder --gan "$WORK/gan" --out "$WORK/enc" \
  --init-encoder "$START" --kimg "$ENC_KIMG" --decay-kimg 15 --device "$DEVICE" --threads 2 \
  --workers "$WORKERS" --checkpoint-minutes 1000 --no-progress || exit 1
export_model() {  # the first export takes the classifier from START, the last keeps OUT's parts
  idinvert train export --encoder "$WORK/enc" --gan "$WORK/gan" --out "$WORK/model" \
    --overwrite "$@" \
    --note "Generator: the committed model's generator continued on one GPU ($DEVICE) for $GAN_MINUTES min (+$kimg kimg, renderer-as-teacher recipe, batch 32, fresh D with 10 kimg D warm-up, training/gpu_session.sh)." \
    --note "Encoder: warm-started from the committed model's encoder, $ENC_KIMG kimg on $DEVICE; boundaries retrained ($BOUNDARY_SAMPLES samples, colour decorrelation); classifier unchanged (trained on renders only)."
}
ship_model() {  # the model directory as it is now, under $OUT
  cp "$WORK/model/encoder.safetensors" "$OUT/"
  (cd "$WORK/model" && tar -cf "$OUT/model.tar" --exclude=encoder.safetensors .)
}
stage export export_model --extras-from "$START" || exit 1
ship_model
stage boundary idinvert train boundary --model "$WORK/model" --all --samples "$BOUNDARY_SAMPLES" \
  --select-samples "$SELECT_SAMPLES" --device "$DEVICE" --threads 4 --workers 4 --no-progress || exit 1
ship_model
stage eval idinvert eval --model "$WORK/model" --n "$EVAL_N" --seed 0 --steps 100 --gen-n "$GEN_N" \
  --json "$WORK/eval.json" --device "$DEVICE" --threads 4 --workers "$WORKERS" --no-progress
eval_rc=$?
if [ $eval_rc -eq 0 ]; then stage export_eval export_model --eval "$WORK/eval.json"; fi
ship_model
log "done (eval exit $eval_rc): $(ls "$OUT" | tr '\n' ' ')"
exit $eval_rc
