#!/usr/bin/env bash
# Train the shipped models on a lent GPU machine (the session's `device` tool), both at once, over two or
# three calls, on the original CIFAR-10, and measure how fast.
#
#   here:   bash benchmarks/gpu_train.sh prepare [DATA]    # DATA: default the original CIFAR-10 (fetched)
#   there, call 1 (the machine starts; the data's first half comes):
#           run(command="bash benchmarks/gpu_train.sh stage", carry=[".gpu"], timeout_s=120)
#   there, call 2 at once (the machine is given back after 30 s idle; the data's second half comes):
#           run(command="export CALL_S=560; bash benchmarks/gpu_train.sh train cnv 770 ... &
#                        bash benchmarks/gpu_train.sh train binarynet 770 ...; wait",
#               carry=[".gpu2"], timeout_s=600)   # docs/models.md has the plan's options
#   there, call 3 at once, with the time left (status's budget_left_s less about 40 s):
#           run(command="bash benchmarks/gpu_train.sh resume cnv 190 &
#                        bash benchmarks/gpu_train.sh resume binarynet 190; wait", timeout_s=210)
#   here:   bash benchmarks/gpu_train.sh check DIR/cnv  # DIR: the last call's files_at; then DIR/binarynet
#   warm restarts: stage both halves first, then train in one call (its schedule ends at the call's stop,
#   `bcnn train --budget-to-stop`, however long three runs starting at once take to start). `--init-from`
#   and `--teacher` take the bundled nets by name (`--init-from binarynet`), which come with the
#   repository; float weights (shrink_checkpoint) need a carry of their own, as session 14's .gpu-init
#   (binarynet's 28 MB fit neither data carry). The calls: docs/models.md, "Session 14" and after.
#
# prepare: puts what the GPU machine lacks into .gpu/ and .gpu2/ (git-ignored, each carried by one call, a
#   call carrying 64 MiB with the repository): the wheels of brevitas, qonnx and their dependencies that its
#   image does not hold, and CIFAR-10 as lossless WebP (benchmarks/cifar_webp.py), 17 MB a batch: the test
#   batch and training batches 1-2 in .gpu, 3-5 in .gpu2 (the machine reaches no network). DATA defaults to
#   the original CIFAR-10, which `bcnn fetch-cifar10` writes into $CIFAR_ORIG (~/.cache/bcnn/cifar10-orig)
#   if it is not there; the targets were measured on it, not on the JPEG copy in ../shared.
# stage: there, the first call: installs the wheels and unpacks the carried batches (the first half).
# train ARCH SECONDS [bcnn train options]: one run of bf16, compiled training whose schedule runs by the
#   clock (`bcnn train --time-budget`) over what SECONDS leave for epochs, so that two runs sharing the GPU,
#   or one left alone when the other ends, still finish their schedules in time. NAME=N names the run
#   (default ARCH), for two runs of one ARCH. Two `train`s started together set up the machine once. At the
#   end, the export and its torch-vs-engine check (EXPORT_S seconds are kept for them). CALL_S=S: this call
#   has only the first S of the SECONDS (a call may last 10 minutes, a lease 15); the run stops cleanly
#   then (`bcnn train --stop-after`), `resume` goes on with the rest in a later call, and such a plan
#   exports nothing there: `check` does it here. Back in $OUT/NAME come train.log, written as it goes, and
#   run.tar.partNN (model.bcnn where exported, history.json and the best epoch's float weights in
#   bfloat16): five files for two runs, of the 8 a call returns. A second `train` of the same NAME on the
#   still-warm machine finds the first one's run folder as /tmp/run-NAME.prev (for --init-from).
# resume NAME SECONDS: the run NAME of an earlier call on this warm machine goes on (`bcnn train --resume`)
#   until its schedule ends or SECONDS are spent, and returns as `train` does.
# bench SECONDS NET...: `bcnn bench` of random-weight NETs (cnv, binarynet) on the GPU against the CPU's fast
#   engine, within SECONDS in all; the JSON comes back as $OUT/bench-NET.json, the rows as they are measured
#   as $OUT/bench-NET.log. torch-packed-cuda compiles once per batch size (about 30 s each for binarynet up to
#   batch 256; batch 4096 took over 90 s in session 20 and was not reached). BATCHES and BACKENDS override
#   the batch sizes (1,16,256,4096) and backends (fast,torch-cuda,torch-packed-cuda), e.g. BATCHES=4096.
# profile ARCH [STEPS]: `benchmarks/train_speed.py` there: ms per training step (float32, bf16, bf16 compiled,
#   bf16 compiled NHWC: if that wins, pass --channels-last to `train`),
#   then torch.profiler's top operators over STEPS compiled bf16 steps; also as $OUT/profile-ARCH.txt.
# teacher-speed [NET]: `benchmarks/teacher_speed.py --device cuda` there: a compiled net as a GPU teacher
#   (`train --teacher`), eager and compiled, ms per batch of 400 against the engine on the CPU, and
#   exact or not; also as $OUT/teacher-speed-NET.txt. NET: a bundled name (default binarynet) or a file.
# check DIR: unpacks a returned run into .gpu-returned/NAME (not carried), exports its best epoch here if no model.bcnn came
#   back (a plan over several calls; `bcnn train --export-only`: torch vs engine on the test set), runs `bcnn
#   infer` of the model on all 10,000 test images of the original CIFAR-10 and of the JPEG copy (DATA=...:
#   on that alone), to ship it, prints the run's best epoch, last epoch and median of its last 20 (the
#   run's level: the best epoch is also a draw on the test set), and keeps the float weights as
#   .gpu-returned/NAME-best.pt (for `train ... --init-from`, in a carry of its own; NAME: the folder's,
#   e.g. binarynet or bn100). A float teacher's run (`train resnet9 ...`) is neither exported nor inferred:
#   its float32 weights are kept as .gpu-returned/NAME-best.pt, for `--teacher`.
set -euo pipefail
gpu=${GPU_DIR:-.gpu}  # another folder only to try the script out elsewhere
gpu2=${GPU2_DIR:-.gpu2}  # the data's second half: one call's carry holds 64 MiB, CIFAR-10 needs two
returned=${RETURNED:-.gpu-returned}  # here: what came back, unpacked (git-ignored, never carried)
orig=${CIFAR_ORIG:-$HOME/.cache/bcnn/cifar10-orig}  # here: the original CIFAR-10, as `bcnn fetch-cifar10` writes it
work=${GPU_WORK:-/tmp}  # there: run folders, the unpacked data, the wheels (another only for tests here)
cmd=${1:?usage: gpu_train.sh prepare [DATA] | stage | train ARCH SECONDS [options] | resume NAME SECONDS | bench SECONDS NET... | profile ARCH [STEPS] | teacher-speed [NET] | check DIR}
shift
export_s=${EXPORT_S:-60}  # the export of the best epoch: ONNX, compile, torch and engine on 10,000 images
start_s=${START_S:-30}  # a run's start there: python, torch and brevitas imports, data to the GPU
end_s=${END_S:-20}  # kept at a call's end: the run stops this long before it (returning takes a few seconds)
# (binarynet's took about 30 s on the H200 machine's 16 cores)

data=$work/gpu-data/cifar-10-batches-py  # there: the carried batches, unpacked
setup() {  # there: the carried wheels; `setup stage` also unpacks the batches carried so far, `setup data` all six
    mkdir -p "$work"
    export PYTHONPATH=$work/site:$PWD/src PYTHONUNBUFFERED=1
    exec {lock}>"$work"/gpu-setup.lock && flock "$lock"  # two `train`s started together set up once
    if ! python3 -c "import brevitas, qonnx" 2>/dev/null; then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$work"/site "$gpu"/whl/*.whl
        nvidia-smi -L || true
    fi
    if [ -n "${1:-}" ]; then
        local carried=() w
        for w in "$gpu"/cifar/*.webp "$gpu2"/cifar/*.webp; do  # those not unpacked yet
            [ -f "$w" ] && [ ! -f "$data/$(basename "$w" .webp)" ] && carried+=("$(dirname "$w")")
        done
        [ ${#carried[@]} = 0 ] || python3 benchmarks/cifar_webp.py unpack "$work/gpu-data" "${carried[@]}" > /dev/null
    fi
    if [ "${1:-}" = data ]; then
        local b
        for b in test_batch data_batch_{1..5}; do
            [ -f "$data/$b" ] || { echo "setup: no $b yet: .gpu comes with the first call (stage), .gpu2 with train's" >&2
                                   exit 2; }
        done
    fi
    flock -u "$lock"
}

case $cmd in
prepare)
    src=${1:-$orig}
    [ -n "${1:-}" ] || [ -d "$orig/cifar-10-batches-py" ] || bcnn fetch-cifar10 --out "$orig"
    mkdir -p "$gpu/whl"  # .gitignore holds /.gpu/ and /.gpu2/
    # pinned to what tests pass with here; the machine's image has torch, numpy, numba, onnx, onnxruntime,
    # onnxscript, pillow, tqdm, attrs, protobuf, zipp and the rest
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d "$gpu/whl" brevitas==0.13.4 dependencies==2.0.1 unfoldNd==0.2.3 onnxoptimizer==0.4.2 qonnx==1.0.0 \
        bitstring==5.0.0 tibs==2.0.2 clize==5.0.2 sigtools==4.0.1 docutils==0.23 od==2.0.2 toposort==1.10 \
        importlib_metadata==10.2.0 lazy-importer==0.1.0
    rm -f "$gpu/cifar10.tar.xz"  # the JPEG copy that sessions 6-12 carried
    # packing takes about 10 minutes of this machine: done again only for another DATA
    if [ "$(cat "$gpu2/cifar/SOURCE" 2>/dev/null)" != "$(realpath "$src")" ]; then
        rm -rf "$gpu/cifar" "$gpu2/cifar"
        python3 benchmarks/cifar_webp.py pack "$src" "$gpu/cifar" "$gpu2/cifar"
        realpath "$src" > "$gpu2/cifar/SOURCE"
    fi
    # each call carries the repository and one of the two folders: 64 MiB at most
    for carry in "$gpu" "$gpu2"; do
        { git ls-files -z | xargs -0 stat -c %s; find "$carry" -type f -printf '%s\n'; } |
            awk '{s += $1} END {printf "repository + %s: %.1f MiB of the 64 MiB a call carries\n", "'"$carry"'", s / 1048576}'
    done
    ;;
stage)
    setup stage
    echo "staged: $(ls "$data" | tr '\n' ' ')"
    ;;
train|resume)
    if [ "$cmd" = train ]; then
        arch=${1:?ARCH}; budget=${2:?SECONDS}; shift 2; name=${NAME:-$arch}
    else
        name=${1:?NAME}; budget=${2:?SECONDS}
        [ $# = 2 ] || { echo "resume NAME SECONDS: the run goes on with its own options" >&2; exit 2; }
        [ -f "$work/run-$name.args" ] || { echo "resume: no run $name on this machine" >&2; exit 2; }
    fi
    drop_compile() { local eager=() a; for a in "${run[@]}"; do [ "$a" = --compile ] || eager+=("$a"); done
                     run=("${eager[@]}"); }
    started=$(date +%s)
    call_s=$budget
    [ "$cmd" = train ] && [ -n "${CALL_S:-}" ] && [ "$CALL_S" -lt "$budget" ] && call_s=$CALL_S
    call_end=$(( started + call_s ))  # this call's share; a plan over two calls resumes in the second
    out=${OUT:-$work/gpu-out}/$name; mkdir -p "$out"
    setup data
    if [ "$cmd" = train ]; then
        calls=1; [ "$call_s" -lt "$budget" ] && calls=2
        # a plan over two calls exports nothing there: `check` exports the returned weights here (binarynet's
        # in about 2 minutes of this 2-core machine), which leaves the GPU a minute more for training
        [ "$calls" = 2 ] && export_s=0
        # The schedule runs by the clock (`bcnn train --time-budget`), over the epoch loop's seconds: the
        # budget less this setup, each call's start (START_S) and the END_S each call keeps at its end, and
        # the export. So two runs sharing the GPU, or one left alone when the other ends, still finish their
        # schedules on time. A one-call plan charges no start: its run fits the schedule to the stop once
        # started (`bcnn train --budget-to-stop`), however long three runs starting at once take.
        starts=$calls; [ "$calls" = 1 ] && starts=0
        loop_s=$(( budget - ($(date +%s) - started) - starts * start_s - calls * end_s - export_s ))
        [ "$loop_s" -gt 0 ] || { echo "train: $budget s leave no time to train" >&2; exit 2; }
        # options after ARCH SECONDS come last, so they may override these
        # the checkpoint (170 MB for binarynet, with Adam's state) every 10th epoch and every best one: written
        # every epoch it made session 10's 1-s epochs half as long again
        run=(python3 -m bcnn train --arch "$arch" --data "$data" --no-progress --precision bf16 --compile
             --checkpoint-every 10 --time-budget "$loop_s" --out "$work/run-$name" "$@")
        # COMPILE=0: eager (the test here, where compiling takes longer than its runs)
        [ "${COMPILE:-1}" = 0 ] && drop_compile
        echo "training by the clock: $loop_s s of epochs in $calls call(s)" | tee -a "$out/train.log"
        if [ -d "$work"/run-"$name" ]; then  # an earlier call's on this warm machine: kept for --init-from
            rm -rf "$work"/run-"$name".prev && mv "$work"/run-"$name" "$work"/run-"$name".prev
        fi
    else
        source "$work/run-$name.args"
        run+=(--resume); calls=2; export_s=0
    fi
    # the run stops itself at an epoch's end, leaving time for its export and for returning the files (a few
    # seconds); the timeout is only a guard against an epoch far longer than the ones before it
    attempt() {
        declare -p run > "$work/run-$name.args"  # what `resume` goes on with
        # one call: the schedule ends at the stop, however long the start took; two: the rest is the next call's
        local extra=(--budget-to-stop); [ "$calls" = 2 ] && extra=(--no-export)
        local stop_s=$(( call_end - $(date +%s) - export_s - end_s ))
        timeout $(( call_end - $(date +%s) - 2 )) "${run[@]}" "${extra[@]}" --stop-after "$(( stop_s > 1 ? stop_s : 1 ))" \
            2>&1 | tee -a "$out/train.log"
        return "${PIPESTATUS[0]}"
    }
    set +e
    attempt; rc=$?
    if [ "$rc" != 0 ] && [ "$rc" != 124 ] && [ ! -f "$work/run-$name/checkpoint.pt" ] && [[ " ${run[*]} " == *" --compile "* ]]; then
        # one lent GPU call is all there is: rather eager than nothing
        echo "the compiled run failed before its first epoch ended: training eagerly" | tee -a "$out/train.log"
        drop_compile
        rm -rf "$work/run-$name"
        attempt; rc=$?
    fi
    set -e
    if [ "$rc" = 124 ]; then
        echo "killed at the call's end: \`check\` exports the returned best epoch here" | tee -a "$out/train.log"
    elif [ "$rc" != 0 ]; then
        exit "$rc"
    fi
    # back in $out: train.log (written as it goes) and run.tar in parts below the 16 MiB a returned file may
    # have (a call returns 8 files at most: two runs in one call fit). run.tar holds model.bcnn (if exported),
    # history.json and the best epoch's float weights, the binary layers' latent weights in bfloat16 (half
    # the size; shrink_checkpoint says why that is exact), for `check` and for a later --init-from.
    [ -f "$work/run-$name/best.pt" ] || { echo "no epoch ended in time: nothing to return" | tee -a "$out/train.log"; exit 1; }
    ret=$work/return-$name; rm -rf "$ret"; mkdir -p "$ret"
    for f in model.bcnn history.json; do [ -f "$work/run-$name/$f" ] && cp "$work/run-$name/$f" "$ret/"; done
    python3 -c "import sys; from bcnn.checkpoints import shrink_checkpoint; shrink_checkpoint(*sys.argv[1:])" \
        "$work"/run-"$name"/best.pt "$ret"/best-bf16.pt
    rm -f "$out"/run.tar.part*
    tar -C "$ret" -cf - . | split -b 15m -d - "$out/run.tar.part"
    echo "all done $(( $(date +%s) - started )) s after the start" | tee -a "$out/train.log"
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
        timeout "$left" python3 -m bcnn bench "random:$net" --batch "${BATCHES:-1,16,256,4096}" \
            --backends "${BACKENDS:-fast,torch-cuda,torch-packed-cuda}" --json > "$out/bench-$net.json" \
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
teacher-speed)
    net=${1:-binarynet}
    out=${OUT:-$work/gpu-out}; mkdir -p "$out"
    setup
    python3 benchmarks/teacher_speed.py --net "$net" --device cuda --batch 400 --batches 20 --threads 16 2>&1 |
        tee "$out/teacher-speed-$(basename "$net" .bcnn).txt"
    ;;
check)
    dir=${1:?DIR}; name=$(basename "$dir"); mkdir -p "$returned"
    if compgen -G "$dir/run.tar.part*" > /dev/null; then  # the returned folder is read-only: unpack beside .gpu
        x=$returned/$name; rm -rf "$x"; mkdir -p "$x"
        cat "$dir"/run.tar.part* | tar -x -C "$x"
        dir=$x
    fi
    # a folder of session 10 and before: best-bf16.pt.partNN beside model.bcnn
    [ -f "$dir/best-bf16.pt" ] || cat "$dir"/best-bf16.pt.part* > "$dir/best-bf16.pt"
    read -r arch options float < <(python3 -c "import json, torch
from bcnn.floatnet import FLOAT_ARCHS
b = torch.load('$dir/best-bf16.pt', weights_only=False)
print(b['arch'], json.dumps(b.get('model_options') or {}, separators=(',', ':')), int(b['arch'] in FLOAT_ARCHS))")
    cp "$dir/best-bf16.pt" "$returned/$name-best.pt"  # by run: two runs of one arch keep both
    if [ "$float" = 1 ]; then  # a float teacher: nothing to export or infer, its weights kept in float32
        echo "a float teacher, for a later lease: $returned/$name-best.pt (--teacher, in a carry of its own)"
    else
        echo "float weights (bfloat16) for a later lease: $returned/$name-best.pt (--init-from, in a carry of its own)"
    fi
    if [ "$float" = 0 ] && [ ! -f "$dir/model.bcnn" ]; then  # the first call of two, whose second never came: export here
        echo "no model.bcnn returned: exporting the best epoch here (torch vs engine on the test set)"
        rm -rf "$dir/export"; mkdir -p "$dir/export"; cp "$dir/best-bf16.pt" "$dir/export/best.pt"
        bcnn train --arch "$arch" --options "$options" --data "${DATA:-$orig}" \
            --out "$dir/export" --export-only --no-progress > /dev/null
        cp "$dir/export/model.bcnn" "$dir/"
    fi
    tests=("${DATA:-$orig}"); [ -z "${DATA:-}" ] && tests+=(../shared/datasets/cifar10)  # the targets' data, the JPEG copy
    for test in "${tests[@]}"; do
        [ -e "$test" ] && [ "$float" = 0 ] || continue
        echo "== bcnn infer on $test"
        bcnn infer "$dir/model.bcnn" --data "$test" --json
    done
    [ "$float" = 1 ] || echo "model: $dir/model.bcnn"
    if [ -f "$dir/history.json" ]; then
        # the best epoch is a draw on the test set: the median of the last 20 is the run's level. A halving
        # schedule goes on at the lr that followed the best epoch (a cosine one restarts instead).
        python3 - "$dir/history.json" <<'PY'
import json, statistics, sys
h = json.load(open(sys.argv[1]))
best = max(h["history"], key=lambda r: r["test_acc"])  # the first of equals, as best.pt keeps it
accs = [r["test_acc"] for r in h["history"] if r["epoch"] > 0]  # epoch 0: a warm start's source
if accs:
    print(f"epochs to {h['history'][-1]['epoch']}: best {best['test_acc']:.2%} (epoch {best['epoch']}), "
          f"last {accs[-1]:.2%}, median of the last {len(accs[-20:])} {statistics.median(accs[-20:]):.2%}")
if best.get("lr") and h.get("schedule", "cosine").startswith("halve"):
    print(f"a later lease goes on from the lr after the best epoch ({best['epoch']}): "
          f"--lr {best['lr']:.3g} --schedule {h['schedule']} --loss {h['loss']}")
PY
    fi
    ;;
*)
    echo "unknown command $cmd" >&2; exit 2
    ;;
esac
