#!/usr/bin/env bash
# The semantic table in one command on one GPU: U-Net, wide U-Net and UNet++ with deep supervision,
# seeds 0, 1 and 2 (one process per seed, side by side on the GPU), each scored on dsb2018_test
# whole-image and in the paper's 96-px windows; report and run records written to OUT:
#   OUT/semantic_nuclei_gpu.md, OUT/semantic_nuclei_gpu_runs.tar.gz (the run records), OUT/seed<k>.log
# On a lent machine, after gpu_carry.sh here: the calls it prints, the last one running
#   benchmarks/semantic/gpu_table.sh "$OUT"
# usage: gpu_table.sh OUT [KEY VALUE overrides for every run]
# DEVICE (default cuda), SEEDS (default "0 1 2") and TEST_SET (default dsb2018_test) change what
# runs: the tests use a tiny schedule on the CPU. Four loader workers per seed: patches are cut on
# the CPU, and three seeds share the machine's cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:?usage: gpu_table.sh OUT [KEY VALUE overrides]}
shift
mkdir -p "$out"
PY=${PY:-python3}
if [ -d .whl ] && ! "$PY" -c "import detectron2" 2> /dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
if [ -z "${DETECTRON2_DATASETS:-}" ] && [ -f .gpu/dsb2018.sha256 ]; then
  benchmarks/semantic/gpu_data.sh unpack .gpu /tmp/gpu_datasets
  export DETECTRON2_DATASETS=/tmp/gpu_datasets
fi
export PYTHONUNBUFFERED=1
root=${SEMANTIC_OUTPUT_ROOT:-/tmp/semantic_gpu}
report=semantic_nuclei_gpu

pids=()
for seed in ${SEEDS:-0 1 2}; do
  "$PY" -m benchmarks semantic --report "$report" --seeds "$seed" --results-dir "$out" --output-root "$root" \
    --test-set "${TEST_SET:-dsb2018_test}" --windows MODEL.DEVICE "${DEVICE:-cuda}" DATALOADER.NUM_WORKERS 4 "$@" \
    > "$out/seed$seed.log" 2>&1 &
  pids+=($!)
done
failed=0
for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
"$PY" -m benchmarks semantic --report "$report" --results-dir "$out" --render-only > /dev/null
tar -czf "$out/${report}_runs.tar.gz" -C "$out" "$report"
rm -rf "${out:?}/$report"
if [ "$failed" != 0 ]; then
  echo "error: a seed's runs failed; see $out/seed*.log" >&2
  exit 1
fi
echo "wrote $out/$report.md and $out/${report}_runs.tar.gz"
