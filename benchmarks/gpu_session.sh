#!/usr/bin/env bash
# One session on a lent GPU machine (16 cores, one GPU, minutes of device time): simulate
# the datasets on all cores, train the two shipped models and the three Fig. 1e runs as five
# processes sharing the GPU, each fitted into TRAIN_SECONDS by a short timed trial, then
# evaluate on the test splits and leave weights, model cards, tables and logs in $OUT.
#
#   OUT=/path/to/results TRAIN_SECONDS=240 bash benchmarks/gpu_session.sh
#
# Wall time is about TRAIN_SECONDS x 1.15 plus 3 minutes (simulation ~25 s, throughput benchmark
# ~40 s, timed trials ~20 s, evaluations ~60 s on an H200 machine): give the device call a limit
# above that, and keep time for a rerun.
#
# Sizes can be shrunk for a trial run on a CPU (N_SHIP, SIZE_SHIP, N_FIG, SIZE_FIG,
# FILTERS_SHIP, FILTERS_FIG, MAX_EPOCHS, BATCH). Python packages missing on the machine
# travel as wheels in .whl/ (see the device tool's README).
set -uo pipefail
OUT=${OUT:?set OUT to the results folder}
WORK=${WORK:-/tmp/gombnet-gpu}
TRAIN_SECONDS=${TRAIN_SECONDS:-240}
N_SHIP=${N_SHIP:-16000}; SIZE_SHIP=${SIZE_SHIP:-128}; FILTERS_SHIP=${FILTERS_SHIP:-32,64,128,256}
N_FIG=${N_FIG:-2000}; SIZE_FIG=${SIZE_FIG:-256}; FILTERS_FIG=${FILTERS_FIG:-32,64,128,256}
MAX_EPOCHS=${MAX_EPOCHS:-100}; BATCH=${BATCH:-32}; BATCH_FIG=${BATCH_FIG:-16}; MAX_VAL=${MAX_VAL:-256}
# evaluation runs on the CPU, one image at a time (~0.03 s per 128 px image on one core,
# ~0.1 s at 256 px): a full test split of thousands would outlast the lease
MAX_TEST=${MAX_TEST:-400}; MAX_TEST_FIG=${MAX_TEST_FIG:-100}  # 256 px: random guessing + 3 models
PY=${PY:-python3}
PARTS=${PARTS:-"bench ship fig1e"}  # any of: bench (throughput alone), ship (shipped models), fig1e
has() { [[ " $PARTS " == *" $1 "* ]]; }

if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || exit 1
    export PYTHONPATH=/tmp/site:$PWD/src
else
    export PYTHONPATH=$PWD/src
fi
# five trainings and their numpy share 16 cores: keep each process's thread pools small
export OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 PYTHONUNBUFFERED=1
mkdir -p "$WORK" "$OUT/logs"
LOG=$OUT/logs
T0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - T0 )) s] $*"; }

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
  $PY -c "import torch, numpy, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, \
'numpy', numpy.__version__, 'cuda', torch.cuda.is_available())"; nproc; } | tee "$LOG/machine.txt"

stamp "simulating"
mkdir -p "$WORK/graphene" "$WORK/ws2-wsse" "$WORK/fig1e"
if has ship; then
    for preset in graphene ws2-wsse; do
        $PY -m gombnet simulate --preset $preset --n "$N_SHIP" --size "$SIZE_SHIP" --seed 0 --workers 6 \
            --out "$WORK/$preset/data.h5" > "$LOG/simulate-$preset.txt" 2>&1 &
    done
fi
if has fig1e || has bench; then
    $PY -m gombnet simulate --preset graphene --n "$N_FIG" --size "$SIZE_FIG" --seed 0 --workers 4 \
        --out "$WORK/fig1e/graphene.h5" > "$LOG/simulate-fig1e.txt" 2>&1 &
fi
wait
stamp "simulated"; tail -n 2 "$LOG"/simulate-*.txt

stamp "throughput alone on the device (paper size: 256 px, filters 32-256)"
has bench && $PY benchmarks/bench_train.py --data "$WORK/fig1e/graphene.h5" --filters "$FILTERS_FIG" --batch-size "$BATCH_FIG" \
    --images "${BENCH_IMAGES:-1024}" --epochs 3 --json "$OUT/bench_train.json" 2>&1 | tee "$LOG/bench-train.txt"

stamp "training"
if has ship; then
    for preset in graphene ws2-wsse; do
        # pooled Dice made ws2-wsse label whole layers S2 or SSe; one Dice per class fixed that, and a
        # cross-entropy term cut Se-S reported in layers without Se (README; both tried as CPU fine-tunes)
        per_class=""; [ "$preset" = ws2-wsse ] && per_class="--per-class-dice --bce-weight 1"
        $PY benchmarks/train_models.py "$preset" $per_class --work "$WORK" --n "$N_SHIP" --size "$SIZE_SHIP" \
            --filters "$FILTERS_SHIP" --epochs "$MAX_EPOCHS" --batch-size "$BATCH" --lr 1e-3 --schedule cosine \
            --max-val-images "$MAX_VAL" --max-test-images "$MAX_TEST" --eval-workers 4 --budget-seconds "$TRAIN_SECONDS" \
            --note "trained on a lent GPU beside other trainings, epochs fitted to a ${TRAIN_SECONDS} s budget" \
            > "$LOG/train-$preset.txt" 2>&1 &
    done
fi
# '+' is not allowed in the names of files brought back: logs use '-'
FIG_RUNS="unet+dice unet+gomb gombnet+gomb"
if has fig1e; then
    for run in $FIG_RUNS; do
        $PY benchmarks/fig1e.py --work "$WORK/fig1e" --n "$N_FIG" --size "$SIZE_FIG" --filters "$FILTERS_FIG" \
            --epochs "$MAX_EPOCHS" --batch-size "$BATCH_FIG" --max-val-images "$MAX_VAL" \
            --budget-seconds "$TRAIN_SECONDS" --only "$run" > "$LOG/fig1e-${run//+/-}.txt" 2>&1 &
    done
fi
wait
stamp "trained"
has fig1e && $PY benchmarks/fig1e.py --work "$WORK/fig1e" --n "$N_FIG" --size "$SIZE_FIG" --filters "$FILTERS_FIG" \
    --epochs "$MAX_EPOCHS" --batch-size "$BATCH_FIG" --max-test-images "$MAX_TEST_FIG" --eval-workers 8 2>&1 | tee "$OUT/fig1e-table.txt"
stamp "evaluated"

has ship && cp src/gombnet/weights/graphene.* src/gombnet/weights/ws2-wsse.* "$OUT/"
cp "$WORK/fig1e/fig1e.json" "$OUT/" 2>/dev/null
for d in graphene ws2-wsse; do
    mkdir -p "$LOG/$d"
    cp "$WORK/$d/test.json" "$WORK/$d/budget.json" "$WORK/$d/run/metrics.csv" "$WORK/$d/run/config.json" \
        "$LOG/$d/" 2>/dev/null
done
for run in $FIG_RUNS; do
    cp "$WORK/fig1e/$run/metrics.csv" "$LOG/fig1e-${run//+/-}-metrics.csv" 2>/dev/null
    cp "$WORK/fig1e/$run.budget.json" "$LOG/fig1e-${run//+/-}-budget.json" 2>/dev/null
done
# at most 8 files come back: pack the logs into one archive
tar -czf "$OUT/logs.tar.gz" -C "$OUT" logs && rm -rf "$LOG"
stamp "done"; ls -la "$OUT"
