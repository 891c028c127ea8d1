#!/usr/bin/env bash
# The GPU checks of the switches issue (#18) and the deployment issue (#17), as one prepared run for
# a machine with a CUDA GPU. It needs python3 with torch, torchvision, click, tqdm, pyyaml, numpy,
# pytest (for the generated image folder) and, for the ONNX rows, onnx, onnxscript and onnxruntime;
# compress runs from the checkout (PYTHONPATH), nothing is installed. Every step has its own time
# limit and its own log, so one failure does not hide the rest:
#
#   bash benchmarks/gpu_checks.sh                    # on the GPU machine; logs in $OUT (or gpu-checks/)
#   DEVICE=cpu QUICK=1 bash benchmarks/gpu_checks.sh # a dry run of the script itself on a CPU
#
# 1. compress train on the GPU: LeNet-5 on mnist5k (filter group lasso, 3 epochs) and ResNet-20 on a
#    generated image folder with --amp bf16 --channels-last (2 epochs);
# 2. finite_check_cost.py: the per-step cost of the finiteness check (a host-device sync) vs none;
# 3. regularizer_overhead.py --matrix: penalty / proximal / pruning vs plain, fp32, bf16, compile;
# 4. deploy_speed.py: the latency table on the GPU (eager, channels_last, ONNX Runtime; compile for
#    ResNet-20 only, to stay inside the time the machine is lent).
# Estimated 7 minutes on an H200 (the steps' limits add up to 27: give `run` a timeout of 600 s
# and expect the tail of each log in the output, the whole logs in $OUT).
set -u
out=${OUT:-gpu-checks}
device=${DEVICE:-cuda}
quick=${QUICK:-}
mkdir -p "$out"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
work=$(mktemp -d)

step() {  # step NAME SECONDS COMMAND...: run it with a limit, log to $out/NAME.log, say how it ended
    local name=$1 limit=$2
    shift 2
    echo "== $name (limit ${limit}s): $*"
    timeout "$limit" "$@" >"$out/$name.log" 2>&1
    local rc=$?
    tail -n 25 "$out/$name.log"
    echo "== $name: exit $rc"
}

{ nvidia-smi || true; "$py" -c "import torch; print(torch.__version__, torch.cuda.is_available())"; } >"$out/machine.log" 2>&1
cat "$out/machine.log"
epochs=3 rounds=30 reps=9
lim=(--limit-batches 20)
overhead=(--matrix)
cases=()
if [ -n "$quick" ]; then
    epochs=1 rounds=2 reps=2
    lim=(--limit-batches 2)
    overhead=(--rounds 2 --steps 2)
    cases=(--cases lenet5@ssl)
fi

step train_lenet5 240 "$py" -m compress train --schedule schedules/lenet5-filters.yaml --device "$device" \
    --epochs "$epochs" --out-dir "$work" --name lenet5 --no-progress --no-plots
"$py" -c "from pathlib import Path; from tests.tiny_data import write_image_folder; \
write_image_folder(Path('$work/images'), classes=10, per_class=40, size=32)" >"$out/images.log" 2>&1
step train_resnet20 300 "$py" -m compress train --schedule schedules/resnet20-cifar10-distiller.yaml --device "$device" \
    --dataset imagefolder --data-dir "$work/images" --input-size 32 --workers 2 --batch-size 64 --epochs 2 \
    "${lim[@]}" --amp bf16 --channels-last --out-dir "$work" --name resnet20 --no-progress --no-plots
step finite_check 240 "$py" benchmarks/finite_check_cost.py --device "$device" --rounds "$rounds"
step regularizer_overhead 300 "$py" benchmarks/regularizer_overhead.py "${overhead[@]}" --device "$device"
step deploy_speed 300 "$py" benchmarks/deploy_speed.py --device "$device" --no-compile --no-explain --reps "$reps" \
    --min-sample-ms 50 "${cases[@]}"
[ -z "$quick" ] && step deploy_speed_compile 240 "$py" benchmarks/deploy_speed.py --device "$device" --no-explain \
    --reps "$reps" --min-sample-ms 50 --cases resnet20_cifar@0.5
rm -rf "$work"
