#!/usr/bin/env bash
# The paper's text-to-image costs on one GPU, at the paper's sizes, with the full architectures
# and random weights (nothing to download): SD 1.5 at 512 px (50 steps, the authors' setting) and
# SD 3.5 medium at 1024 px (40 steps, the paper's), bf16 frozen weights with float32 trainable
# parameters, LoRA rank 4 and the full denoiser, with and without gradient checkpointing. Each
# line of the printed tables is one `python benchmarks/bench_t2i.py` run: seconds per training
# iteration of each method against one ODE sampling pass of the same batch, and peak GPU memory.
#
#   bash benchmarks/gpu_rehearsal.sh            # one GPU (docs/text_to_image.md: measured)
#   bash benchmarks/gpu_rehearsal.sh --tiny     # the same runs on tiny models (CPU, seconds)
#   bash benchmarks/gpu_rehearsal.sh --protocol # the paper's protocol end to end, instead
#
# --protocol: `python -m amcli.t2i rehearse protocol` (amcli/rehearse/protocol.py) writes SD 1.5
# and SD 3.5 medium with random weights in the hub's layout and every scorer at full size, then
# runs the workflow's text-to-image rules on each at the paper's sizes (SD 1.5 at 512 px, SD 3.5
# medium at 1024 px, 40 steps, 2 iterations of Adjoint Matching, batch 1, LoRA rank 4, gradient
# checkpointing): fine-tune -> LoRA -> sample (load_lora_weights) -> sample the base -> score
# with config/t2i_gpu.yaml's metrics -> table, and prints seconds and peak host memory per
# stage. Expected 8-10 minutes on one H200, an estimate (not yet run on one: docs/text_to_image.md);
# --tiny --protocol: the same on tiny models, CPU, about a minute per family.
# FAMILIES="sd15" limits --protocol to those families; each stage prints its line as it ends, so
# a run stopped by the 590 s timeout still shows how far it got.
# OUT=<folder> keeps each run's table there as well (default: a temporary folder).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT="${OUT:-$(mktemp -d)}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1
TINY=0 PROTOCOL=0
for arg in "$@"; do
  case "$arg" in
    --tiny) TINY=1 ;;
    --protocol) PROTOCOL=1 ;;
    *) echo "unknown argument $arg (--tiny, --protocol)" >&2; exit 2 ;;
  esac
done
if [ "$PROTOCOL" = 1 ]; then
  if [ "$TINY" = 1 ]; then
    SIZES="--scale tiny --size 16 --steps 4"
  else
    SIZES="--size sd15=512 sd35m=1024 --steps 40"
  fi
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv
  # shellcheck disable=SC2086  # the sizes are separate words
  timeout 590 "$PY" -m amcli.t2i rehearse protocol --out "$OUT/protocol" \
    --families ${FAMILIES:-sd15 sd35m} $SIZES --iterations 2 --cores "$(nproc)"
  status=$?
  echo "stages in $OUT/protocol/protocol.md, logs in $OUT/protocol/logs"
  exit $status
fi
if [ "$TINY" = 1 ]; then
  SD15="--arch tiny-sd15 --size 16"; SD35="--arch tiny-sd3 --size 16"; K15=4; K35=4; B15=2; B35=2
else
  SD15="--arch sd15 --size 512"; SD35="--arch sd35-medium --size 1024"; K15=50; K35=40; B15=4; B35=2
fi
# RUNS="name ..." runs only those of the runs below (default: all of them, about 12 minutes on
# an H200; the first three, the ones not measured before, about 7).
RUNS="${RUNS:-all}"
run() {  # name, then bench_t2i arguments
  local name="$1" t0=$SECONDS
  shift
  [ "$RUNS" = all ] || [[ " $RUNS " == *" $name "* ]] || return 0
  echo "## $name"
  timeout 600 "$PY" benchmarks/bench_t2i.py "$@" 2>&1 | tee "$OUT/$name.md" | grep -v Warning
  echo "($name: $((SECONDS - t0)) s in all)"
  echo
}
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
"$PY" -c "import torch, diffusers; print('torch', torch.__version__, 'diffusers', diffusers.__version__)"
# The authors' SD 1.5 size, LoRA, every method; gradient checkpointing throughout: Adjoint
# Matching regresses all its loss steps in one batch (K x the batch), which without it does not
# fit SD 1.5 at 512 px and batch 4 in an H200's 139 GiB (measured; sd15_lora_no_ckpt shows it).
run sd15_lora_ckpt $SD15 --steps $K15 --batch $B15 --dtype bfloat16 --lora-rank 4 \
  --checkpointing --rounds 1 --methods adjoint_matching draft refl grpo
# SD 3.5 medium at its own 1024 px, LoRA, every method
run sd35m_lora_ckpt $SD35 --steps $K35 --batch $B35 --dtype bfloat16 --lora-rank 4 \
  --checkpointing --rounds 1 --methods adjoint_matching draft refl grpo
# memory without checkpointing at batch 1 (a method that runs out of memory is printed so)
run sd15_lora_no_ckpt $SD15 --steps $K15 --batch 1 --dtype bfloat16 --lora-rank 4 --rounds 1 \
  --methods draft refl adjoint_matching
# the full UNet against a frozen copy
run sd15_full_ckpt $SD15 --steps $K15 --batch $B15 --dtype bfloat16 --lora-rank 0 \
  --checkpointing --rounds 1 --methods adjoint_matching
# the paper's setting on a public model: the full SD 3.5 medium transformer at 512 px, 40 steps
run sd35m_full_ckpt_512 ${SD35/1024/512} --steps $K35 --batch 4 --dtype bfloat16 --lora-rank 0 \
  --checkpointing --rounds 1 --methods adjoint_matching
echo "tables in $OUT"
