#!/usr/bin/env bash
# The next lease's commands (docs/models.md, "Training on a lent GPU machine"), rehearsed here on the CPU at
# full model size on a thousand images: binarynet at batch 100 and 400 at once (bn100, bn400), compiled, the first call stopped by
# CALL_S, the second resuming until both schedules end by the clock, then `check` of each returned folder.
# About 10 minutes of 2 cores. Its folders are under /tmp/rehearse (its .gpu copy too: `check` writes there).
#   bash benchmarks/gpu_rehearse.sh [SECONDS_CALL1 SECONDS_CALL2]   # default 300 180
set -euo pipefail
call1=${1:-300}; call2=${2:-180}
root=/tmp/rehearse
[ -f .gpu/cifar10.tar.xz ] && compgen -G ".gpu/whl/*.whl" > /dev/null ||
    { echo "run \`bash benchmarks/gpu_train.sh prepare\` first" >&2; exit 2; }
[ -x .venv/bin/python3 ] && export PATH=$PWD/.venv/bin:$PATH  # the README's install; the GPU image has its own
rm -rf "$root"; mkdir -p "$root/gpu"
ln -s "$PWD/.gpu/cifar10.tar.xz" "$PWD/.gpu/whl" "$root/gpu/"
export GPU_DIR=$root/gpu GPU_WORK=$root/work
s="bash benchmarks/gpu_train.sh"
t0=$(date +%s)
OUT=$root/out1 bash -c "export CALL_S=$call1; R='--lr-scale glorot --loss sqrhinge'
    NAME=bn100 $s train binarynet $(( call1 + call2 )) --batch-size 100 --lr 1.4e-3 \$R --schedule exp:12 --train-limit 1000 --test-limit 200 &
    NAME=bn400 $s train binarynet $(( call1 + call2 )) --batch-size 400 --lr 2.8e-3 \$R --train-limit 1000 --test-limit 200; wait"
echo "== call 1: $(( $(date +%s) - t0 )) s; returned: $(find "$root/out1" -type f | wc -l) files"
compgen -G "$root/out1/*/run.tar.part00" > /dev/null || { echo "call 1 returned no run" >&2; exit 1; }
t1=$(date +%s)
OUT=$root/out2 bash -c "$s resume bn100 $call2 & $s resume bn400 $call2; wait"
echo "== call 2: $(( $(date +%s) - t1 )) s; returned: $(find "$root/out2" -type f | wc -l) files"
for name in bn100 bn400; do
    echo "== check $name"
    $s check "$root/out2/$name"
done
