#!/usr/bin/env bash
# Makes, in the repository root, what gpu_table.sh needs on a lent GPU machine whose Python 3.12 has
# torch, torchvision, matplotlib, tensorboard and OpenCV but no package registry:
#   .whl/   Detectron2 v0.6 (pure Python) and the other packages maskrcnnpp needs, as cp312 wheels,
#           at the versions installed here (what the tests ran with)
#   .gpu/   the prepared DSB2018 paper split ($DETECTRON2_DATASETS/dsb2018), in parts that each fit one
#           call beside the working tree (gpu_data.sh)
# and prints the calls to make: each carries one part, the last one runs the table.
# usage: DETECTRON2_DATASETS=datasets benchmarks/semantic/gpu_carry.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
LIMIT=${CARRY_LIMIT_BYTES:-$((64 * 1024 * 1024))}
data=${DETECTRON2_DATASETS:?set DETECTRON2_DATASETS to the folder that holds dsb2018/ (tools/prepare_dsb2018.py)}
[ -f "$data/dsb2018/annotations/instances_train.json" ] || { echo "error: $data/dsb2018: not a prepared DSB2018 split" >&2; exit 2; }

version() { "$PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$1"; }
rm -rf .whl && mkdir .whl
"$PY" tools/install_detectron2.py --wheel-dir .whl
binary=()
for name in pycocotools iopath yacs omegaconf hydra-core termcolor roifile; do binary+=("$name==$(version "$name")"); done
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl "${binary[@]}" "setuptools<81"
# Published as source only; pure Python, so a wheel built here runs there.
"$PY" -m pip wheel -q --no-deps -w .whl "fvcore==$(version fvcore)" "antlr4-python3-runtime==$(version antlr4-python3-runtime)"

bytes() { du -cb --files0-from=- | tail -1 | cut -f1; }
tree=$( (git ls-files -z; git ls-files -z -o --exclude-standard) | bytes)
wheels=$(find .whl -type f -print0 | bytes)
part=$((LIMIT - tree - wheels - 1024 * 1024))
[ "$part" -gt $((4 * 1024 * 1024)) ] || { echo "error: the working tree ($tree bytes) and .whl leave no room to carry data" >&2; exit 2; }
benchmarks/semantic/gpu_data.sh pack "$data/dsb2018" .gpu "$part"

mapfile -t parts < <(cd .gpu && ls dsb2018.tar.xz.??)
echo "working tree $tree bytes, .whl $wheels bytes, data in ${#parts[@]} parts of at most $part bytes."
echo "Device calls, one right after the other (the machine keeps what earlier calls carried while warm):"
for i in "${!parts[@]}"; do
  carry="\".gpu/${parts[$i]}\""
  [ "$i" = 0 ] && carry="\".whl\", $carry"
  if [ "$i" = $((${#parts[@]} - 1)) ]; then
    echo "  carry [$carry, \".gpu/dsb2018.sha256\"]  command: benchmarks/semantic/gpu_table.sh \"\$OUT\""
  else
    echo "  carry [$carry]  command: true"
  fi
done
