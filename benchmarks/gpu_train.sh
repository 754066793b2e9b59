#!/usr/bin/env bash
# Train a shipped model on a lent GPU machine (the session's `device` tool) in one call, and measure how fast.
#
#   here:   bash benchmarks/gpu_train.sh prepare [DATA]    # DATA defaults to ../shared/datasets/cifar10
#   there:  run(command="bash benchmarks/gpu_train.sh train binarynet 560 --batch-size 400 --lr 1e-2",
#               carry=[".gpu"], timeout_s=590)   # batch 400: 1 s an epoch on an H200, 9 s at batch 100
#   there, at once on the still-warm machine, with the device time left:
#           run(command="bash benchmarks/gpu_train.sh bench 120 binarynet cnv", carry=[".gpu"], timeout_s=150)
#   here:   bash benchmarks/gpu_train.sh check DIR/binarynet  # DIR: the call's files_at
#
# prepare: puts what the GPU machine lacks into .gpu/ (git-ignored, carried by the call, under 64 MiB):
#   the wheels of brevitas, qonnx and their dependencies that its image does not hold, and the CIFAR-10
#   JPEG tree as one .tar.xz (19 MB; the machine reaches no network).
# train ARCH SECONDS [bcnn train options]: one run of as many epochs as fit in SECONDS in all, bf16 and compiled
#   (the cosine schedule needs its length up front). A calibration run first (2 epochs on a tenth of the
#   data, no export) compiles the model, which torch's compile cache keeps for the real run, and times an
#   epoch; EPOCHS=N skips it. The export and its torch-vs-engine check run there (EXPORT_S seconds are kept
#   for them; a run that overruns is stopped in time and its best epoch so far exported). model.bcnn,
#   history.json, train.log and the best epoch's float weights (bfloat16, in parts: best-bf16.pt.partNN)
#   come back in $OUT/ARCH. A later lease goes on from them: `check` joins them into .gpu/ARCH-best.pt,
#   and `train ARCH SECONDS --init-from .gpu/ARCH-best.pt --lr LR` starts a warm restart from it. A second
#   `train` on the still-warm machine finds the first call's run folder as /tmp/run-ARCH.prev.
# bench SECONDS NET...: `bcnn bench` of random-weight NETs (cnv, binarynet) on the GPU against the CPU's fast
#   engine, within SECONDS in all; the JSON comes back as $OUT/bench-NET.json, the rows as they are measured
#   as $OUT/bench-NET.log. torch-packed-cuda compiles once per batch size (about 30 s each for binarynet).
# profile ARCH [STEPS]: `benchmarks/train_speed.py` there: ms per training step (float32, bf16, bf16 compiled,
#   bf16 compiled NHWC: if that wins, pass --channels-last to `train`),
#   then torch.profiler's top operators over STEPS compiled bf16 steps; also as $OUT/profile-ARCH.txt.
# check DIR: `bcnn infer` of the returned model on all 10,000 test images here, to ship it; and the returned
#   float weights joined into .gpu/ARCH-best.pt.
set -euo pipefail
gpu=${GPU_DIR:-.gpu}  # another folder only to try the script out elsewhere
work=${GPU_WORK:-/tmp}  # there: run folders, the unpacked data, the wheels (another only for tests here)
cmd=${1:?usage: gpu_train.sh prepare [DATA] | train ARCH SECONDS [options] | bench SECONDS NET... | profile ARCH [STEPS] | check DIR}
shift
export_s=${EXPORT_S:-60}  # the export of the best epoch: ONNX, compile, torch and engine on 10,000 images
# (binarynet's took about 30 s on the H200 machine's 16 cores)

data=$work/gpu-data/cifar10  # there: the carried tree, unpacked
setup() {  # there: the carried wheels; `setup data` also unpacks the data and decodes it once into the cache
    mkdir -p "$work"
    export PYTHONPATH=$work/site:$PWD/src PYTHONUNBUFFERED=1
    exec {lock}>"$work"/gpu-setup.lock && flock "$lock"  # two `train`s started together set up once
    if ! python3 -c "import brevitas, qonnx" 2>/dev/null; then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$work"/site "$gpu"/whl/*.whl
        nvidia-smi -L || true
    fi
    if [ "${1:-}" = data ]; then
        if [ ! -d "$data" ]; then
            mkdir -p "$data"
            python3 -c "import tarfile; tarfile.open('$gpu/cifar10.tar.xz').extractall('$data', filter='data')"
        fi
        python3 -c "from bcnn import data; [data.load('$data', s) for s in ('train', 'test')]"
    fi
    flock -u "$lock"
}

case $cmd in
prepare)
    tree=${1:-../shared/datasets/cifar10}
    mkdir -p "$gpu/whl"  # .gitignore holds /.gpu/
    # pinned to what tests pass with here; the machine's image has torch, numpy, numba, onnx, onnxruntime,
    # onnxscript, pillow, tqdm, attrs, protobuf, zipp and the rest
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d "$gpu/whl" brevitas==0.13.4 dependencies==2.0.1 unfoldNd==0.2.3 onnxoptimizer==0.4.2 qonnx==1.0.0 \
        bitstring==5.0.0 tibs==2.0.2 clize==5.0.2 sigtools==4.0.1 docutils==0.23 od==2.0.2 toposort==1.10 \
        importlib_metadata==10.2.0 lazy-importer==0.1.0
    # a call carries files, not folders of 60,000 of them; xz also shares the JPEG headers (57 -> 19 MB)
    rm -rf "$gpu/cifar10"
    tar -C "$tree" -cf - . | xz -6 -T2 > "$gpu/cifar10.tar.xz"
    # the call carries the repository and $gpu: 64 MiB at most
    { git ls-files -z | xargs -0 stat -c %s; find "$gpu" -type f -printf '%s\n'; } |
        awk '{s += $1} END {printf "repository + %s: %.1f MiB of the 64 MiB a call carries\n", "'"$gpu"'", s / 1048576}'
    ;;
train)
    arch=${1:?ARCH}; budget=${2:?SECONDS}; shift 2
    deadline=$(( $(date +%s) + budget ))
    out=${OUT:-$work/gpu-out}/$arch; mkdir -p "$out"
    setup data
    # options after ARCH SECONDS come last, so they may override these
    # the checkpoint (170 MB for binarynet, with Adam's state) every 10th epoch and every best one: written
    # every epoch it made session 10's 1-s epochs half as long again
    train=(python3 -m bcnn train --arch "$arch" --data "$data" --no-progress --precision bf16 --compile
           --checkpoint-every 10)
    if [ -z "${EPOCHS:-}" ]; then
        calibrate() {
            rm -rf "$work"/calibrate-"$arch"  # an earlier call's or a failed try's: train refuses to overwrite
            t0=$(date +%s)
            "${train[@]}" --epochs 2 --out "$work"/calibrate-"$arch" --train-limit 5000 --test-limit 1000 --no-export \
                "$@" 2>&1 | tee -a "$out/train.log"
            local rc=${PIPESTATUS[0]}
            t1=$(date +%s)
            return "$rc"
        }
        if ! calibrate "$@"; then  # one lent GPU call is all there is: rather eager than nothing
            echo "the compiled run failed: training eagerly" | tee -a "$out/train.log"
            unset 'train[-1]'
            calibrate "$@"
        fi
        # a tenth of the images, a tenth of the test set: ten times its second epoch is a full epoch, plus
        # the writing of checkpoint.pt and best.pt, which does not shrink with the data; the calibration's
        # first epoch wrote both, the real run writes about a quarter of that per epoch (a checkpoint every
        # 10th epoch and at every best one, best.pt at 15% of session 10's epochs)
        read -r epoch_s fixed_s < <(python3 -c "import json
h = json.load(open('$work/calibrate-$arch/history.json'))['history']
first, second = h[0]['seconds'], h[1]['seconds']
gap = h[1]['finished_at'] - h[0]['finished_at']  # the second epoch and the first one's writing
# start and data loading, and half the cold compile: the real run compiles from torch's cache
print(round(10 * second + 0.25 * (gap - second), 2), round($t1 - $t0 - first - gap + 0.5 * (first - second)))")
        EPOCHS=$(python3 -c "print(max(1, int(0.9 * ($deadline - $t1 - $fixed_s - $export_s) / $epoch_s)))")
        echo "epoch: $epoch_s s, fixed costs: $fixed_s s; training $EPOCHS epochs" | tee -a "$out/train.log"
    fi
    if [ -d "$work"/run-"$arch" ]; then  # an earlier call's on this warm machine: kept for --init-from
        rm -rf "$work"/run-"$arch".prev && mv "$work"/run-"$arch" "$work"/run-"$arch".prev
    fi
    run=("${train[@]}" --epochs "$EPOCHS" --out "$work"/run-"$arch" "$@")
    set +e
    timeout $(( deadline - $(date +%s) - export_s )) "${run[@]}" 2>&1 | tee -a "$out/train.log"
    rc=${PIPESTATUS[0]}
    set -e
    if [ "$rc" = 124 ]; then
        echo "stopped at the deadline: exporting the best epoch so far" | tee -a "$out/train.log"
        "${run[@]}" --export-only 2>&1 | tee -a "$out/train.log"
    elif [ "$rc" != 0 ]; then
        exit "$rc"
    fi
    cp "$work"/run-"$arch"/model.bcnn "$work"/run-"$arch"/history.json "$out/"
    # The best epoch's float weights, for a later lease to go on from (--init-from): the binary layers'
    # latent weights in bfloat16 (half the size, so binarynet's fit a call's carry; shrink_checkpoint says
    # why that is exact) and in parts below the 16 MiB a returned file may have. `check` joins them again.
    python3 -c "import sys; from bcnn.train import shrink_checkpoint; shrink_checkpoint(*sys.argv[1:])" \
        "$work"/run-"$arch"/best.pt "$work"/best-bf16-"$arch".pt
    split -b 15m -d "$work"/best-bf16-"$arch".pt "$out/best-bf16.pt.part"
    echo "all done $(( $(date +%s) - deadline + budget )) s after the start" | tee -a "$out/train.log"
    ;;
bench)
    budget=${1:?SECONDS}; shift
    deadline=$(( $(date +%s) + budget ))
    out=${OUT:-$work/gpu-out}; mkdir -p "$out"
    setup
    for net in "$@"; do
        left=$(( deadline - $(date +%s) ))
        [ "$left" -gt 10 ] || { echo "bench: no time left for $net"; break; }
        # the rows go to a log as they come: a bench stopped at the deadline still returns what it measured
        timeout "$left" python3 -m bcnn bench "random:$net" --batch 1,16,256,4096 \
            --backends fast,torch-cuda,torch-packed-cuda --json > "$out/bench-$net.json" \
            2> >(tee "$out/bench-$net.log" >&2) || echo "bench $net: exit $?"
    done
    ;;
profile)
    arch=${1:?ARCH}; steps=${2:-20}
    out=${OUT:-$work/gpu-out}; mkdir -p "$out"
    setup
    device=$(python3 -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")
    python3 benchmarks/train_speed.py --device "$device" --archs "$arch" --steps 5 --channels-last --profile "$steps" 2>&1 |
        tee "$out/profile-$arch.txt"
    ;;
check)
    dir=${1:?DIR}
    bcnn infer "$dir/model.bcnn" --data "${DATA:-../shared/datasets/cifar10}" --json
    if compgen -G "$dir/best-bf16.pt.part*" > /dev/null; then
        arch=$(python3 -c "import json; print(json.load(open('$dir/history.json'))['arch'])")
        cat "$dir"/best-bf16.pt.part* > "$gpu/$arch-best.pt"
        echo "float weights (bfloat16) for a later lease: $gpu/$arch-best.pt (--init-from $gpu/$arch-best.pt)"
        # a halving schedule goes on at the lr that followed the best epoch (a cosine one restarts instead)
        python3 - "$dir/history.json" <<'PY'
import json, sys
h = json.load(open(sys.argv[1]))
lr = {r["epoch"]: r.get("lr") for r in h["history"]}.get(h.get("best_epoch"))
if lr and h.get("schedule", "cosine").startswith("halve"):
    print(f"a later lease goes on from the lr after the best epoch ({h['best_epoch']}): "
          f"--lr {lr:.3g} --schedule {h['schedule']} --loss {h['loss']}")
PY
    fi
    ;;
*)
    echo "unknown command $cmd" >&2; exit 2
    ;;
esac
