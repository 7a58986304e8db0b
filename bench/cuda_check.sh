#!/usr/bin/env bash
# The checks for a machine with a CUDA GPU, in one command: the test suite with every model job of
# its tiny pipelines on the GPU (each provenance.json then names the device), and beside it the
# three GPU benches (7B-shaped random-weight models, bench/README.md). Writes full logs to OUTDIR
# and prints a short summary last.
#
#   bash bench/cuda_check.sh [OUTDIR]
#
# Environment (all optional):
#   LORA_WF_DATA_DIR  the shared data (default ../shared/data)
#   WHEELS            a folder of wheels installed (--no-deps, --no-index) into python3's own
#                     environment first, for a machine whose Python lacks some of requirements.txt
#                     (the tests' Snakemake runner starts without PYTHONPATH, so no scratch site)
#   PYTEST_SECONDS    stop the test suite after this long (default 300)
#   PYTEST_WORKERS    pytest-xdist workers (default: cores - 3; the benches get the last 2 cores)
#   PYTEST_ARGS       more pytest arguments (e.g. --ignore=tests/test_studies.py)
#   PYTEST_TARGETS    which test files (default: tests)
#   BENCHES           which benches, in order (default: likelihood train generate)
#   BENCH_SIZE        the benches' model size (default 7b; tiny for a smoke run on a CPU)
set -uo pipefail
cd "$(dirname "$0")/.."
OUTDIR=${1:-/tmp/cuda_check}
mkdir -p "$OUTDIR"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1 SKIP_SLURM=1
export LORA_WF_DATA_DIR=${LORA_WF_DATA_DIR:-$(cd .. && pwd)/shared/data}
start=$(date +%s)
if [ -n "${WHEELS:-}" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir "$WHEELS"/*.whl \
    || { echo "installing $WHEELS failed"; exit 1; }
fi
export PYTHONPATH=$PWD/workflow_scripts${PYTHONPATH:+:$PYTHONPATH}
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import torch, transformers, peft, snakemake; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available(), '| transformers', transformers.__version__, '| peft', peft.__version__, '| snakemake', snakemake.__version__)"
  python3 -c "from finetune_study import precision; print('dtype auto ->', precision.resolve('auto'), '| CPU bf16 flags:', precision.cpu_has_native_bf16())"
  echo "cores: $(nproc)"
} 2>&1 | tee "$OUTDIR/env.txt"

cores=$(nproc)
workers=${PYTEST_WORKERS:-$(( cores > 5 ? cores - 3 : 1 ))}
last=$(( cores - 1 ))
pin_suite="" pin_bench=""  # the suite on all but the last two cores, the benches on those two
if command -v taskset > /dev/null && [ "$cores" -gt 4 ]; then
  pin_suite="taskset -c 0-$(( cores - 3 ))" pin_bench="taskset -c $(( cores - 2 ))-$last"
fi
rm -rf /tmp/cuda_check_pt
: > "$OUTDIR/bench.log"
( timeout "${PYTEST_SECONDS:-300}" $pin_suite \
    python3 -m pytest -v -rfEs -n "$workers" -p no:cacheprovider --basetemp /tmp/cuda_check_pt ${PYTEST_ARGS:-} ${PYTEST_TARGETS:-tests} \
    > "$OUTDIR/pytest.log" 2>&1; echo "pytest exit $?" >> "$OUTDIR/pytest.log" ) &
suite=$!
# the benches one after another, beside the suite
bench() {
  local seconds=$1; shift
  echo "== $*" >> "$OUTDIR/bench.log"
  timeout "$seconds" $pin_bench python3 "$@" >> "$OUTDIR/bench.log" 2>&1 \
    || echo "(exit $? after at most ${seconds}s)" >> "$OUTDIR/bench.log"
}
size=${BENCH_SIZE:-7b}
for b in ${BENCHES:-likelihood train generate}; do
  case $b in
    likelihood) bench 70 bench/bench_likelihood.py --size "$size" --examples 64 --labels 6 ;;
    train) bench 110 bench/bench_train.py --size "$size" --steps 10 --batch 8 --grad-ckpt ;;
    generate) bench 240 bench/bench_generate.py --size "$size" --prompts 32 --new-tokens 32 ;;
  esac
done
wait $suite

echo "======== summary ($(( $(date +%s) - start )) s)"
cat "$OUTDIR/env.txt"
echo "-- model jobs of the suite's pipelines: device and dtype in their provenance.json"
find /tmp/cuda_check_pt -name provenance.json -path "*results*" -print0 2>/dev/null \
  | xargs -0 -r python3 -c "
import collections, json, sys
c = collections.Counter()
for f in sys.argv[1:]:
    p = json.load(open(f))
    if 'dtype' in p:
        c[(p.get('device', '-'), p['dtype'])] += 1
for (dev, dt), n in sorted(c.items()):
    print(f'{n:5d}  {dev}  {dt}')
"
echo "-- pytest"
for status in PASSED FAILED ERROR SKIPPED; do
  echo "$status: $(grep -cE "^\[gw[0-9]+\] .* $status tests/|^tests/.* $status" "$OUTDIR/pytest.log")"
done
grep -E "\] (FAILED|ERROR) tests/" "$OUTDIR/pytest.log" | sed "s/.*\] //" | cut -c1-200 | head -40
grep -E " (passed|failed)|pytest exit" "$OUTDIR/pytest.log" | tail -2
echo "-- benches"
grep -vE "^\s*$|Warning|warn\(" "$OUTDIR/bench.log" | cut -c1-200 | tail -60
