# Sourced by training/gpu_session.sh and benchmarks/gpu_bench.sh on the device machine: runs
# idinvert from this checkout without installing it (the device has torch, numpy, Pillow,
# safetensors, click, tqdm, pluggy; no network) and defines log/stage helpers.
# Needs: OUT (the device tool sets it), the ignored .gpu/ from training/gpu_prepare.py (carried).
# Sets: REPO, WORK, PY, PYTHONPATH, IDINVERT_VGG16; functions idinvert, log, stage.
OUT=${OUT:?run through the device tool (it sets OUT), or set OUT to a folder}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${WORK:-/tmp/idinvert-gpu}
cd "$REPO" || exit 2
mkdir -p "$OUT" "$WORK"
SITE=$WORK/site  # a package folder of links to the repo's layers
mkdir -p "$SITE/idinvert"
for layer in core training plugins hub demo cli; do ln -sfn "$REPO/$layer" "$SITE/idinvert/$layer"; done
export PYTHONPATH=$SITE:$REPO/.gpu/site${PYTHONPATH:+:$PYTHONPATH}
export IDINVERT_VGG16=$REPO/.gpu/vgg16.safetensors HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
idinvert() { "$PY" -m idinvert.cli.main "$@"; }
log() { echo "$(date -u +%H:%M:%S) $*" | tee -a "$OUT/session.log"; }
stage() {  # stage NAME COMMAND...: run, log its duration and output tail, return its status
  local name=$1 t0 rc
  shift
  t0=$(date +%s)
  log "== $name: $*"
  "$@" > "$WORK/$name.out" 2>&1
  rc=$?
  tail -n 25 "$WORK/$name.out" >> "$OUT/session.log"
  log "== $name: exit $rc after $(($(date +%s) - t0)) s"
  return $rc
}
if [ ! -f "$REPO/.gpu/vgg16.safetensors" ]; then
  log "missing .gpu/ (run training/gpu_prepare.py here and carry .gpu)"
  exit 2
fi
log "$("$PY" -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA")'), $(nproc) CPU cores"
