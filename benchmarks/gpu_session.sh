#!/usr/bin/env bash
# One session on a lent GPU machine (16 cores, one GPU, minutes of device time): simulate
# the datasets on all cores, train the shipped-model candidates and the three Fig. 1e runs as
# processes sharing the GPU, each fitted into TRAIN_SECONDS by a short timed trial (and a cosine
# schedule that ends with the time if the shared GPU is slower than the trial said), evaluate
# on the test splits and leave weights, model cards, tables and logs in $OUT.
#
#   OUT=/path/to/results TRAIN_SECONDS=300 bash benchmarks/gpu_session.sh
#
# Shipped-model candidates (none replaces a shipped model on this machine's copy; each comes
# back as $OUT/NAME.tar.gz with weights, card, test report and log, and is shipped by hand
# after a check on held-out data):
#   graphene-wide  the paper's width (filters 32-256) from scratch
#   graphene-ft    the shipped graphene model (filters 16-256) fine-tuned on new images; that model
#                  is this script's former graphene-deep candidate (the 4-level CPU model deepened by
#                  one level, README "One level deeper") after one more short GPU fine-tune
#   ws2-wsse-ft    the shipped ws2-wsse model (filters 16-256) fine-tuned (one Dice per class,
#                  cross-entropy 3) on images with wider W and Se-S contrast ranges (WS2_WIDE=1,
#                  the default)
#
# Wall time is about TRAIN_SECONDS x 1.15 plus 2-3 minutes (simulation ~25 s, timed trials
# ~20 s, evaluations ~40 s): give the device call a limit above that. Whatever has not been
# packed DEADLINE seconds after the start is packed then, so a call stopped by its limit
# still brings the weights back.
#
# Sizes can be shrunk for a trial run on a CPU (N_SHIP, SIZE_SHIP, N_FIG, SIZE_FIG,
# FILTERS_WIDE, FILTERS_FIG, MAX_EPOCHS, BATCH). Python packages missing on the machine
# travel as wheels in .whl/ (see the device tool's README).
set -uo pipefail
OUT=${OUT:?set OUT to the results folder}
WORK=${WORK:-/tmp/gombnet-gpu}
TRAIN_SECONDS=${TRAIN_SECONDS:-320}
DEADLINE=${DEADLINE:-540}
# seed 2: images the shipped models (seeds 0 and 1) have never seen
N_SHIP=${N_SHIP:-16000}; SIZE_SHIP=${SIZE_SHIP:-128}; SEED_SHIP=${SEED_SHIP:-2}
FILTERS_WIDE=${FILTERS_WIDE:-32,64,128,256}
N_FIG=${N_FIG:-2000}; SIZE_FIG=${SIZE_FIG:-256}; FILTERS_FIG=${FILTERS_FIG:-32,64,128,256}
MAX_EPOCHS=${MAX_EPOCHS:-100}; BATCH=${BATCH:-32}; BATCH_FIG=${BATCH_FIG:-16}; MAX_VAL=${MAX_VAL:-256}
# evaluation runs on the CPU, one image at a time (~0.03 s per 128 px image on one core,
# ~0.1 s at 256 px): a full test split of thousands would outlast the lease
MAX_TEST=${MAX_TEST:-400}; MAX_TEST_FIG=${MAX_TEST_FIG:-100}  # 256 px: random guessing + 3 models
PY=${PY:-python3}
# ws2-wsse candidate: train on wider contrast ranges than the preset's (W : S2 and Se-S : S2 drawn
# apart, as multislice images need; README "On an independent simulator"); WS2_WIDE=0: the preset's
WS2_SET=()
[ "${WS2_WIDE:-1}" = 1 ] && WS2_SET=(--set 'image.z_exponent=[1.4, 1.9]' --set 'image.heavy_atom_scale=[0.5, 1.0]')
PARTS=${PARTS:-"ship fig1e"}  # any of: bench (throughput alone), ship (model candidates), fig1e
has() { [[ " $PARTS " == *" $1 "* ]]; }

if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || exit 1
    export PYTHONPATH=/tmp/site:$PWD/src
else
    export PYTHONPATH=$PWD/src
fi
# several trainings and their numpy share 16 cores: keep each process's thread pools small
export OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 PYTHONUNBUFFERED=1
LOG=$WORK/logs  # outside $OUT: at most 8 files come back, so logs travel packed
mkdir -p "$WORK" "$LOG" "$OUT"
T0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - T0 )) s] $*"; }

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
  $PY -c "import torch, numpy, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, \
'numpy', numpy.__version__, 'cuda', torch.cuda.is_available())"; echo "cores: $(nproc --all)"; } | tee "$LOG/machine.txt"

# pack one candidate (weights, card, test report, per-epoch metrics, log) into $OUT/NAME.tar.gz
pack() {
    local name=$1 d=$WORK/$1 files=() part=$OUT/$1.tar.gz.part$BASHPID
    for f in src/gombnet/weights/$name.safetensors src/gombnet/weights/$name.json "$d/test.json" \
             "$d/budget.json" "$d/run/metrics.csv" "$LOG/train-$name.txt"; do
        [ -e "$f" ] && files+=("$f")
    done
    # not shipped yet (stopped before the end): the run folder's best weights and config
    [ -e "src/gombnet/weights/$name.json" ] || for f in "$d/run/model.safetensors" "$d/run/config.json"; do
        [ -e "$f" ] && files+=("$f")
    done
    [ ${#files[@]} -gt 0 ] && tar -czf "$part" --transform 's,.*/,,' "${files[@]}" && mv "$part" "$OUT/$name.tar.gz"
}
SHIP_NAMES="graphene-wide graphene-ft ws2-wsse-ft"
FIG_RUNS="unet+dice unet+gomb gombnet+gomb"
pack_fig1e() {
    mkdir -p "$WORK/fig1e-pack"
    cp "$WORK/fig1e/fig1e.json" "$OUT/fig1e-table.txt" "$LOG"/fig1e-*.txt "$LOG"/simulate-*.txt "$LOG/machine.txt" \
        "$WORK/fig1e-pack/" 2>/dev/null
    for run in $FIG_RUNS; do  # '+' is not allowed in the names of files brought back
        cp "$WORK/fig1e/$run/metrics.csv" "$WORK/fig1e-pack/fig1e-${run//+/-}-metrics.csv" 2>/dev/null
        cp "$WORK/fig1e/$run.budget.json" "$WORK/fig1e-pack/fig1e-${run//+/-}-budget.json" 2>/dev/null
    done
    tar -czf "$OUT/logs.tar.gz.part$BASHPID" -C "$WORK" fig1e-pack && mv "$OUT/logs.tar.gz.part$BASHPID" "$OUT/logs.tar.gz"
    # each run's best weights travel too, so that the test split can be scored again elsewhere
    for run in $FIG_RUNS; do
        local d=$WORK/fig1e/$run files=() part=$OUT/fig1e-${run//+/-}-run.tar.gz.part$BASHPID
        for f in model.safetensors config.json state.json metrics.csv; do [ -e "$d/$f" ] && files+=("$f"); done
        [ ${#files[@]} -gt 0 ] && tar -czf "$part" -C "$d" "${files[@]}" && mv "$part" "${part%.part*}"
    done
}
# the call's limit can fall during an evaluation: pack whatever exists at the deadline
( sleep "$DEADLINE"; stamp "deadline: packing what there is"; has ship && for n in $SHIP_NAMES; do pack "$n"; done
  pack_fig1e ) &
WATCHDOG=$!

stamp "simulating"
mkdir -p "$WORK/fig1e" "$WORK/graphene-wide" "$WORK/graphene-ft" "$WORK/ws2-wsse-ft"
SIMS=()
if has ship; then
    $PY -m gombnet simulate --preset graphene --n "$N_SHIP" --size "$SIZE_SHIP" --seed "$SEED_SHIP" --workers 6 \
        --out "$WORK/graphene-wide/data.h5" > "$LOG/simulate-graphene.txt" 2>&1 & SIMS+=($!)
    $PY -m gombnet simulate --preset ws2-wsse --n "$N_SHIP" --size "$SIZE_SHIP" --seed "$SEED_SHIP" --workers 6 \
        "${WS2_SET[@]}" --out "$WORK/ws2-wsse-ft/data.h5" > "$LOG/simulate-ws2-wsse.txt" 2>&1 & SIMS+=($!)
fi
if has fig1e || has bench; then
    # all cores when no shipped-model datasets are simulated beside it
    $PY -m gombnet simulate --preset graphene --n "$N_FIG" --size "$SIZE_FIG" --seed 0 --workers "$(has ship && echo 4 || echo 14)" \
        --out "$WORK/fig1e/graphene.h5" > "$LOG/simulate-fig1e.txt" 2>&1 & SIMS+=($!)
fi
[ ${#SIMS[@]} -gt 0 ] && wait "${SIMS[@]}"
ln -sf "$WORK/graphene-wide/data.h5" "$WORK/graphene-ft/data.h5"
stamp "simulated"; tail -n 2 "$LOG"/simulate-*.txt

stamp "throughput alone on the device (paper size: 256 px, filters 32-256)"
has bench && $PY benchmarks/bench_train.py --data "$WORK/fig1e/graphene.h5" --filters "$FILTERS_FIG" --batch-size "$BATCH_FIG" \
    --images "${BENCH_IMAGES:-1024}" --epochs 3 --json "$OUT/bench_train.json" 2>&1 | tee "$LOG/bench-train.txt"

stamp "training"
ship() {  # NAME PRESET train_models options...
    local name=$1 preset=$2; shift 2
    $PY benchmarks/train_models.py "$preset" --name "$name" --work "$WORK" --n "$N_SHIP" --size "$SIZE_SHIP" \
        --seed "$SEED_SHIP" --epochs "$MAX_EPOCHS" --batch-size "$BATCH" --schedule cosine \
        --max-val-images "$MAX_VAL" --max-test-images "$MAX_TEST" --eval-workers 4 --budget-seconds "$TRAIN_SECONDS" \
        --note "trained on a lent GPU beside other trainings, epochs fitted to a ${TRAIN_SECONDS} s budget" \
        "$@" > "$LOG/train-$name.txt" 2>&1
    stamp "$name finished (exit $?)"
    pack "$name"
}
SHIPS=(); FIGS=()
if has ship; then
    ship graphene-wide graphene --filters "$FILTERS_WIDE" --lr 1e-3 & SHIPS+=($!)
    # fine-tunes keep the starting model's filters (train_models.py's default with --init)
    ship graphene-ft graphene --init graphene --lr 3e-4 & SHIPS+=($!)
    # one Dice per class stops whole layers being called S2 or SSe, the cross-entropy cuts Se-S
    # reported in layers without Se (README: both tried as CPU fine-tunes)
    ship ws2-wsse-ft ws2-wsse --init ws2-wsse --lr 2e-4 --per-class-dice --bce-weight 3 \
        "${WS2_SET[@]}" & SHIPS+=($!)  # the settings only go into the card: the data exists already
fi
if has fig1e; then
    for run in $FIG_RUNS; do
        $PY benchmarks/fig1e.py --work "$WORK/fig1e" --n "$N_FIG" --size "$SIZE_FIG" --filters "$FILTERS_FIG" \
            --epochs "$MAX_EPOCHS" --batch-size "$BATCH_FIG" --max-val-images "$MAX_VAL" \
            --budget-seconds "$TRAIN_SECONDS" --only "$run" > "$LOG/fig1e-${run//+/-}.txt" 2>&1 &
        FIGS+=($!)
    done
fi
[ ${#FIGS[@]} -gt 0 ] && wait "${FIGS[@]}"
stamp "Fig. 1e trained"
has fig1e && $PY benchmarks/fig1e.py --work "$WORK/fig1e" --n "$N_FIG" --size "$SIZE_FIG" --filters "$FILTERS_FIG" \
    --epochs "$MAX_EPOCHS" --batch-size "$BATCH_FIG" --max-test-images "$MAX_TEST_FIG" --eval-workers "$(has ship && echo 8 || echo 14)" --evaluate-only 2>&1 | tee "$OUT/fig1e-table.txt"
stamp "Fig. 1e evaluated"
[ ${#SHIPS[@]} -gt 0 ] && wait "${SHIPS[@]}"
kill "$WATCHDOG" 2>/dev/null
has ship && for n in $SHIP_NAMES; do pack "$n"; done
pack_fig1e
rm -rf "$LOG"
stamp "done"; ls -la "$OUT"
