#!/usr/bin/env bash
# The next lease's commands (docs/models.md, "Training on a lent GPU machine"), rehearsed here on the CPU at
# full model size on a thousand images: call 1 stages the first half of the data (.gpu), call 2 brings the
# second (.gpu2) and trains cnv and binarynet at once, compiled, stopped by CALL_S, call 3 resumes both until
# their schedules end by the clock, then `check` of each returned folder. About 10 minutes of 2 cores. Its
# folders are under /tmp/rehearse: each call sees only the carry folders that call would have.
#   bash benchmarks/gpu_rehearse.sh [SECONDS_CALL2 SECONDS_CALL3]   # default 300 180
set -euo pipefail
call2=${1:-300}; call3=${2:-180}
root=/tmp/rehearse
[ -f .gpu/cifar/test_batch.webp ] && [ -f .gpu2/cifar/data_batch_5.webp ] && compgen -G ".gpu/whl/*.whl" > /dev/null ||
    { echo "run \`bash benchmarks/gpu_train.sh prepare\` first" >&2; exit 2; }
[ -x .venv/bin/python3 ] && export PATH=$PWD/.venv/bin:$PATH  # the README's install; the GPU image has its own
rm -rf "$root"; mkdir -p "$root/gpu" "$root/gpu2"
export GPU_DIR=$root/gpu GPU2_DIR=$root/gpu2 GPU_WORK=$root/work RETURNED=$root/returned
s="bash benchmarks/gpu_train.sh"
# call 1: only .gpu has come
ln -s "$PWD/.gpu/cifar" "$PWD/.gpu/whl" "$root/gpu/"
OUT=$root/out1 $s stage
# a `train` before the second half has come must refuse, not train on part of the data
if OUT=$root/out0 $s train cnv 60 --train-limit 100 2> "$root/early.log"; then
    echo "train ran without the data's second half" >&2; exit 1
fi
grep -q "no data_batch_3 yet" "$root/early.log" || { cat "$root/early.log" >&2; exit 1; }
# call 2: .gpu2 comes
ln -s "$PWD/.gpu2/cifar" "$root/gpu2/"
t0=$(date +%s)
OUT=$root/out2 bash -c "export CALL_S=$call2
    $s train cnv $(( call2 + call3 )) --batch-size 400 --lr 0.04 --loss sqrhinge --schedule exp:10 --train-limit 1000 --test-limit 200 &
    $s train binarynet $(( call2 + call3 )) --batch-size 400 --lr 1e-2 --train-limit 1000 --test-limit 200; wait"
echo "== call 2: $(( $(date +%s) - t0 )) s; returned: $(find "$root/out2" -type f | wc -l) files"
compgen -G "$root/out2/*/run.tar.part00" > /dev/null || { echo "call 2 returned no run" >&2; exit 1; }
t1=$(date +%s)
OUT=$root/out3 bash -c "$s resume cnv $call3 & $s resume binarynet $call3; wait"
echo "== call 3: $(( $(date +%s) - t1 )) s; returned: $(find "$root/out3" -type f | wc -l) files"
for name in cnv binarynet; do
    echo "== check $name"
    $s check "$root/out3/$name"
done
