#!/usr/bin/env bash
# Train a shipped model on a lent GPU machine (the session's `device` tool) in one call, and measure how fast.
#
#   here:   bash benchmarks/gpu_train.sh prepare [DATA]    # DATA defaults to ../shared/datasets/cifar10
#   there:  run(command="bash benchmarks/gpu_train.sh train binarynet 540", carry=[".gpu"], timeout_s=600)
#   here:   bash benchmarks/gpu_train.sh check DIR         # DIR: the call's files_at, holding model.bcnn
#
# prepare: puts what the GPU machine lacks into .gpu/ (git-ignored, carried by the call, under 64 MiB):
#   the wheels of brevitas, qonnx and their dependencies that its image does not hold, and the CIFAR-10
#   JPEG tree (55 MiB; the machine reaches no network).
# train ARCH SECONDS [bcnn train options]: trains two epochs to measure the epoch time and the fixed costs
#   (start, compile, export), then one run of as many epochs as fit in SECONDS in all (the cosine schedule
#   needs its length up front; EPOCHS=N skips the measurement), bf16 and compiled. The export and its
#   torch-vs-engine check run there; model.bcnn, history.json and train.log come back in $OUT (the float
#   checkpoints are over the 16 MiB a returned file may have, so a GPU run cannot be resumed later).
# check DIR: `bcnn infer` of the returned model on all 10,000 test images here, to ship it.
set -euo pipefail
gpu=${GPU_DIR:-.gpu}  # another folder only to try the script out elsewhere
cmd=${1:?usage: gpu_train.sh prepare [DATA] | train ARCH SECONDS [options] | check DIR}
shift

case $cmd in
prepare)
    data=${1:-../shared/datasets/cifar10}
    mkdir -p "$gpu/whl"  # .gitignore holds /.gpu/
    # pinned to what tests pass with here; the machine's image has torch, numpy, numba, onnx, onnxruntime,
    # onnxscript, pillow, tqdm, attrs, protobuf, zipp and the rest
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d "$gpu/whl" brevitas==0.13.4 dependencies==2.0.1 unfoldNd==0.2.3 onnxoptimizer==0.4.2 qonnx==1.0.0 \
        bitstring==5.0.0 tibs==2.0.2 clize==5.0.2 sigtools==4.0.1 docutils==0.23 od==2.0.2 toposort==1.10 \
        importlib_metadata==10.2.0 lazy-importer==0.1.0
    rm -rf "$gpu/cifar10" && cp -r "$data" "$gpu/cifar10"
    # the call carries the repository and $gpu: 64 MiB at most
    { git ls-files -z | xargs -0 stat -c %s; find "$gpu" -type f -printf '%s\n'; } |
        awk '{s += $1} END {printf "repository + %s: %.1f MiB of the 64 MiB a call carries\n", "'"$gpu"'", s / 1048576}'
    ;;
train)
    arch=${1:?ARCH}; budget=${2:?SECONDS}; shift 2
    start=$(date +%s)
    out=${OUT:-/tmp/gpu-out}; mkdir -p "$out"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "$gpu"/whl/*.whl
    export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
    nvidia-smi -L || true
    run() {  # run EPOCHS DIR [options]: one bcnn train run, its log appended to $out/train.log
        local epochs=$1 dir=$2; shift 2
        python3 -m bcnn train --arch "$arch" --data "$gpu/cifar10" --epochs "$epochs" --out "$dir" --no-progress \
            --precision bf16 --compile "$@" 2>&1 | tee -a "$out/train.log"
    }
    if [ -z "${EPOCHS:-}" ]; then
        # two epochs: the first also compiles, the second is the steady epoch time
        t0=$(date +%s); run 2 /tmp/calibrate "$@"; t1=$(date +%s)
        epoch_s=$(python3 -c "import json; print(round(json.load(open('/tmp/calibrate/history.json'))['history'][1]['seconds'], 2))")
        fixed_s=$(python3 -c "print(round($t1 - $t0 - 2 * $epoch_s))")  # start, compile, export: paid again
        EPOCHS=$(python3 -c "print(max(1, int(0.9 * ($budget - ($t1 - $start) - $fixed_s) / $epoch_s)))")
        echo "epoch: $epoch_s s, fixed costs: $fixed_s s; training $EPOCHS epochs" | tee -a "$out/train.log"
    fi
    run "$EPOCHS" /tmp/run "$@"
    cp /tmp/run/model.bcnn /tmp/run/history.json "$out/"
    echo "all done in $(( $(date +%s) - start )) s" | tee -a "$out/train.log"
    ;;
check)
    dir=${1:?DIR}
    bcnn infer "$dir/model.bcnn" --data "${DATA:-../shared/datasets/cifar10}" --json
    ;;
*)
    echo "unknown command $cmd" >&2; exit 2
    ;;
esac
