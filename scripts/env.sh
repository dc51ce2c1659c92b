# Sourced by scripts/reproduce.sh and scripts/test.sh: creates .venv on first use and
# re-installs only when pyproject.toml changes. Needs Python 3.11+ and pip; no GPU, no model hub.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
VENV="$ROOT/.venv"
STAMP="$VENV/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$STAMP" ]; then
  echo "[env] setting up $VENV (first use; a few minutes)" >&2
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  LOG="$VENV/install.log"
  : >"$LOG"
  if ! "$VENV/bin/python" -c "import torch, torchvision" 2>/dev/null; then
    # Without a GPU, PyTorch's CPU builds are a quarter of the size of PyPI's CUDA builds; where
    # that index is unreachable, PyPI's torch 2.14.1 + torchvision 0.29.1 (the newest pair some
    # CI machines hold on disk; they run on CPUs too). torchvision must match torch exactly.
    if ! command -v nvidia-smi >/dev/null 2>&1 \
      && "$VENV/bin/pip" install -q --retries 0 --timeout 10 torch torchvision \
        --index-url https://download.pytorch.org/whl/cpu >>"$LOG" 2>&1 \
      && "$VENV/bin/python" -c "import torchvision" >>"$LOG" 2>&1; then
      :
    else
      "$VENV/bin/pip" install -q "torch==2.14.1" "torchvision==0.29.1" >>"$LOG" 2>&1 \
        || "$VENV/bin/pip" install -q torch torchvision >>"$LOG" 2>&1 \
        || { cat "$LOG" >&2; exit 1; }
    fi
  fi
  "$VENV/bin/pip" install -q -e ".[workflow,dev,digits,images]" >>"$LOG" 2>&1 || { tail -50 "$LOG" >&2; exit 1; }
  rm -f "$VENV"/.installed-*
  touch "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
# Small problems run faster single-threaded per process; Snakemake runs jobs in parallel.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
