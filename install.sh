#!/usr/bin/env bash
# Install maskrcnnpp and everything it needs: torch + torchvision (with working CPU ops),
# Detectron2 (an importable one is kept; otherwise the registry's pure-Python v0.6),
# and this package in editable mode with its test extras.
#
# Installs into the active virtualenv/conda environment if there is one,
# otherwise into ./.venv (created with $PYTHON, default python3).
set -euo pipefail
cd "$(dirname "$0")"

if [ -n "${VIRTUAL_ENV:-}" ]; then
  PY="$VIRTUAL_ENV/bin/python"
elif [ -n "${CONDA_PREFIX:-}" ]; then
  PY="$CONDA_PREFIX/bin/python"
else
  [ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
  PY=.venv/bin/python
fi
echo "Installing into $("$PY" -c 'import sys; print(sys.prefix)')"

"$PY" -m pip install --upgrade pip wheel "setuptools<81"

# Keep a torch/torchvision pair whose ops run; otherwise take the registry's
# latest pair (unpinned: a pinned local CPU-only torch breaks torchvision's ops).
if ! "$PY" - <<'PYCHECK' 2>/dev/null
import torch
from torchvision.ops import nms
nms(torch.zeros(1, 4), torch.zeros(1), 0.5)
PYCHECK
then
  "$PY" -m pip install torch torchvision
fi

"$PY" tools/install_detectron2.py
"$PY" -m pip install -e ".[test]"
"$PY" -c "import maskrcnnpp, detectron2; print('maskrcnnpp', maskrcnnpp.__version__, 'with Detectron2', detectron2.__version__, '- ready')"
