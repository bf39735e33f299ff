#!/usr/bin/env bash
# GPU check: train the default experiment and C-MAPSS FD001 with trainer=gpu (bf16,
# batches gathered on the GPU), then the training-throughput benchmark on the GPU.
#
# Meant for a machine that has torch + lightning + CUDA but no plantml install and no
# network (wheels for the few missing pure-Python packages in .whl/, data in .gpudata/):
#
#   OUT=/tmp/gpu bash scripts/gpu_check.sh
#
# Writes logs and the benchmark JSON into $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 OMP_WAIT_POLICY=PASSIVE WANDB_MODE=disabled
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
# plantml from the source tree; its configs package lives at the repository top
[ -e src/plantml/configs ] || ln -s "$PWD/configs" src/plantml/configs
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c 'import torch, lightning; print("torch", torch.__version__, "lightning", lightning.__version__, "cuda", torch.cuda.is_available())' | tee -a "$OUT/gpu.txt"

train() {  # plantml-train with the given overrides
  python3 -c 'import sys; from plantml.cli.train import main; sys.argv[0] = "plantml-train"; main()' "$@"
}
run() {  # name, command...: time it, keep its log
  local name=$1; shift
  local t0=$(date +%s%N)
  "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  local ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  printf '%-28s rc=%s  %d.%03d s\n' "$name" "$rc" $((ms / 1000)) $((ms % 1000)) | tee -a "$OUT/summary.txt"
  tail -25 "$OUT/$name.log"
}

run train_synthetic_gpu train trainer=gpu logger=csv paths.output_dir=/tmp/runs/synthetic \
  callbacks.progress_bar.refresh_rate=0
if [ -f .gpudata/cmapss/train_FD001.txt ]; then
  run train_cmapss_gpu train experiment=cmapss_rul trainer=gpu logger=csv data.root=.gpudata/cmapss \
    paths.output_dir=/tmp/runs/cmapss callbacks.progress_bar.refresh_rate=0
fi
cp /tmp/runs/synthetic/metrics.json "$OUT/metrics_synthetic_gpu.json" 2>/dev/null
cp /tmp/runs/cmapss/metrics.json "$OUT/metrics_cmapss_gpu.json" 2>/dev/null
run bench_gpu_bf16_b1024 python3 scripts/bench_train_throughput.py --accelerator gpu \
  --precision bf16-mixed --batch 1024 --steps 200 --repeats 3 --out "$OUT/bench_bf16_b1024.json"
run bench_gpu_fp32_b256 python3 scripts/bench_train_throughput.py --accelerator gpu \
  --precision 32-true --batch 256 --steps 200 --repeats 3 --out "$OUT/bench_fp32_b256.json"
cat "$OUT/summary.txt"
