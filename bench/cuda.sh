#!/usr/bin/env bash
# The GPU checks of a session that is lent one (bench/RESULTS.md, "CUDA"), in one prepared run:
# the CUDA numerics tests against float64, the benchmarks side by side on the device, and
# ResNet-50's training step at a GPU batch. Each step has its own time limit and its own log, so
# one that fails or hangs still leaves the others' figures.
#
#   bash bench/cuda.sh OUT_DIR
#
# The device machine has its own torch (2.11 there); kornia and pytorch-metric-learning, which it
# lacks, travel as wheels and are installed into /tmp/site first (see /work/.library/device).
set -uo pipefail
out=${1:?usage: bash bench/cuda.sh OUT_DIR}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD:$PWD/tests${PYTHONPATH:+:$PYTHONPATH}"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
} 2>&1 | tee "$out/gpu.txt"
timeout 240 python3 -m pytest -q -s -p no:cacheprovider tests/test_cuda_numerics.py 2>&1 | tee "$out/numerics.log"
timeout 240 python3 -m bench --device cuda --quick --only loss memory_loss queue_step augment train_step decode --out "$out" 2>&1 | tee "$out/bench.log"
timeout 150 python3 -m bench.bench_train_step --device cuda --encoder resnet50 --image-size 32 --batch 512 --json "$out/train_step_resnet50.json" 2>&1 | tee "$out/train_step_resnet50.log"
