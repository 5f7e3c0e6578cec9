#!/usr/bin/env bash
# The GPU check of issue 11, as one prepared run for a lent GPU machine that has JAX but no
# TensorFlow (see benchmarks/README.md, "xla_export.py / xla_replay.py").
#
# Here, where TensorFlow is (about 1.5 minutes, 33 MiB of cases):
#     python benchmarks/xla_export.py
# Then on the device, carrying the ignored folder benchmarks/xla_cases:
#     bash benchmarks/device_check.sh            # writes into $OUT (or /tmp/device_check)
# (PLATFORM=cpu REPS=1 to try it on a CPU; without a GPU it stops at once.)
set -euo pipefail
export PYTHONUNBUFFERED=1
out="${OUT:-/tmp/device_check}"
mkdir -p "$out"
python=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/nvidia-smi.csv" || true
"$python" -c "import jax; print('jax', jax.__version__, jax.devices())"
"$python" benchmarks/xla_replay.py benchmarks/xla_cases --platform "${PLATFORM:-gpu}" --reps "${REPS:-20}" --check-cpu \
    --out "$out/xla_replay_gpu.json" 2>&1 | tee "$out/xla_replay_gpu.log"
