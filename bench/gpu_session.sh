#!/usr/bin/env bash
# One prepared GPU session, in one command and about 9 minutes at --size 7b on one H100/H200:
#   (a) the LoRA training sweep (bench_train_sweep.py: tokens per step {16k, 32k, 64k} x gradient
#       checkpointing {off, on} x kernels {none, liger} x pack length {2048, 4096}, the model built
#       once, the grid pruned to its time budget), real tokens/s, MFU, peak GiB;
#   (b) generation at 64 and 256 prompts, transformers against vLLM (bench_generate_backends.py,
#       where that file exists);
#   (c) qlora once on the same shape (needs bitsandbytes);
#   (d) the CUDA test subset, with a time cap.
# Writes each part's log and JSON to OUTDIR and one markdown table, OUTDIR/summary.md, printed last.
# --size tiny runs every part end to end on a CPU in a few minutes (liger, qlora and vLLM rows say
# why they are skipped): run it before spending GPU minutes.
#
#   bash bench/gpu_session.sh [OUTDIR] [--size tiny|7b]
#
# Environment (all optional): WHEELS, LORA_WF_DATA_DIR as in cuda_check.sh; PYTHON (default python3);
# SWEEP_SECONDS, GENERATE_SECONDS, QLORA_SECONDS, PYTEST_SECONDS (the parts' budgets; at 7b
# 200 (+ 40) + 150 + 50 (+ 20) + 60 s: at most 520 s, and the environment lines before them); PYTEST_TARGETS (default: the tests of the training settings and of bf16
# on the device); PYTEST_WORKERS (default 4).
set -uo pipefail
cd "$(dirname "$0")/.."
OUTDIR=/tmp/gpu_session SIZE=7b
while [ $# -gt 0 ]; do
  case $1 in
    --size) SIZE=$2; shift 2 ;;
    --size=*) SIZE=${1#--size=}; shift ;;
    -*) echo "unknown option $1 (usage: bash bench/gpu_session.sh [OUTDIR] [--size tiny|7b])"; exit 2 ;;
    *) OUTDIR=$1; shift ;;
  esac
done
case $SIZE in tiny|7b) ;; *) echo "--size is tiny or 7b, not $SIZE"; exit 2 ;; esac
mkdir -p "$OUTDIR"
rm -f "$OUTDIR"/*.json "$OUTDIR"/*.status "$OUTDIR"/*.log "$OUTDIR"/summary.md
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1 SKIP_SLURM=1
export LORA_WF_DATA_DIR=${LORA_WF_DATA_DIR:-$(cd .. && pwd)/shared/data}
PY=${PYTHON:-python3}
start=$(date +%s)
if [ -n "${WHEELS:-}" ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir "$WHEELS"/*.whl \
    || { echo "installing $WHEELS failed"; exit 1; }
fi
export PYTHONPATH=$PWD/workflow_scripts${PYTHONPATH:+:$PYTHONPATH}
{
  command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  echo "size $SIZE | $(lscpu 2>/dev/null | grep 'Model name' | sed 's/  */ /g') | cores $(nproc)"
  $PY -c "
import importlib.util as u, torch, transformers, peft
print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available(), '| transformers', transformers.__version__, '| peft', peft.__version__)
print('installed:', ', '.join(f'{m} {\"yes\" if u.find_spec(m) else \"no\"}' for m in ('liger_kernel', 'triton', 'bitsandbytes', 'vllm')))
"
} 2>&1 | tee "$OUTDIR/env.txt"
cuda=$($PY -c "import torch; print(int(torch.cuda.is_available()))" 2>/dev/null || echo 0)

# part NAME SECONDS COMMAND...: run one part under a time cap, its output in NAME.log, a status line
part() {
  local name=$1 seconds=$2; shift 2
  local t0; t0=$(date +%s)
  echo "== ($name) $* [cap ${seconds}s]"
  timeout "$seconds" "$@" > "$OUTDIR/$name.log" 2>&1
  local rc=$?
  local what="exit $rc"
  [ "$rc" = 124 ] && what="stopped by its ${seconds}s cap"
  echo "$name: $what after $(( $(date +%s) - t0 )) s" | tee "$OUTDIR/$name.status"
}

if [ "$SIZE" = 7b ]; then
  sweep=(--tokens 16384 32768 65536 --pack 2048 4096 --micro-tokens 8192)
  qlora=(--tokens 16384 --pack 2048 --micro-tokens 8192)
  s_a=${SWEEP_SECONDS:-200} s_b=${GENERATE_SECONDS:-150} s_c=${QLORA_SECONDS:-50} s_d=${PYTEST_SECONDS:-60}
else
  sweep=(--tokens 1024 2048 --pack 256 512 --micro-tokens 1024 --vocab 1000)
  qlora=(--tokens 1024 --pack 256 --micro-tokens 1024 --vocab 1000)
  s_a=${SWEEP_SECONDS:-90} s_b=${GENERATE_SECONDS:-90} s_c=${QLORA_SECONDS:-30} s_d=${PYTEST_SECONDS:-120}
fi

# (a) the training sweep, each process's budget 20 s under its cap (so it prunes and still writes
# its table): kernels none, then liger in a process of its own (its patches cannot be undone, and
# so it gets a share of the time whatever the first grid takes)
part sweep $(( s_a * 3 / 5 + 20 )) $PY bench/bench_train_sweep.py --size "$SIZE" "${sweep[@]}" --ckpt off on \
  --kernels none --steps 2 --warmup 1 --budget-s $(( s_a * 3 / 5 )) --json "$OUTDIR/sweep.json"
part sweep_liger $(( s_a * 2 / 5 + 20 )) $PY bench/bench_train_sweep.py --size "$SIZE" "${sweep[@]}" --ckpt off on \
  --kernels liger --steps 2 --warmup 1 --budget-s $(( s_a * 2 / 5 )) --json "$OUTDIR/sweep_liger.json"

# (b) generation backends
if [ -f bench/bench_generate_backends.py ]; then
  part generate "$s_b" $PY bench/bench_generate_backends.py --size "$SIZE" --prompts 64 256 --new-tokens 128 \
    --json "$OUTDIR/generate.json"
else
  echo "generate: not present (bench/bench_generate_backends.py)" | tee "$OUTDIR/generate.status"
fi

# (c) qlora once
if [ "$cuda" != 1 ]; then
  echo "qlora: skipped: needs a CUDA GPU (bitsandbytes 4-bit)" | tee "$OUTDIR/qlora.status"
elif ! $PY -c "import bitsandbytes" 2> /dev/null; then
  echo "qlora: skipped: bitsandbytes is not installed" | tee "$OUTDIR/qlora.status"
else
  part qlora $(( s_c + 20 )) $PY bench/bench_train_sweep.py --method qlora --size "$SIZE" "${qlora[@]}" \
    --ckpt on --kernels none --steps 2 --warmup 1 --budget-s "$s_c" --json "$OUTDIR/qlora.json"
fi

# (d) the CUDA test subset (cuda_check.sh's invocation, capped)
rm -rf /tmp/gpu_session_pt
( timeout "$s_d" $PY -m pytest -v -rfEs -n "${PYTEST_WORKERS:-4}" -p no:cacheprovider --basetemp /tmp/gpu_session_pt \
    ${PYTEST_TARGETS:-tests/test_training_options.py tests/test_precision.py} > "$OUTDIR/pytest.log" 2>&1
  echo "pytest exit $?" >> "$OUTDIR/pytest.log" )
echo "tests: $(tail -1 "$OUTDIR/pytest.log")"

echo "======== summary ($(( $(date +%s) - start )) s)"
$PY bench/session_summary.py "$OUTDIR"
