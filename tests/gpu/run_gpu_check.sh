#!/bin/bash
# The GPU telemetry check (issue 16), for a machine with an NVIDIA GPU and PyTorch:
# ~60 s of real training under `hpcwrap run`, then tests/gpu/check_gpu_telemetry.py.
# Wheels hpcwrap needs that the machine lacks may lie in .whl/ (installed to /tmp/site).
set -u
cd "$(dirname "$0")/../.."
repo=$PWD
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$repo
else
  export PYTHONPATH=$repo
fi
nvidia-smi -L
python3 -c "import torch, pynvml, psutil; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
work=$(mktemp -d)
cd "$work" || exit 1
SECONDS_TRAIN=${SECONDS_TRAIN:-60}
python3 -m hpcwrap run --telemetry-interval 2 --mode replication \
  --objective 'GPU telemetry check' -- \
  python3 "$repo/tests/gpu/gpu_train.py" --seconds "$SECONDS_TRAIN" --report "$work/report.json" \
  | tail -n 3
echo "hpcwrap run exit: ${PIPESTATUS[0]}"
python3 "$repo/tests/gpu/check_gpu_telemetry.py" "$work/run_logs" "$work/report.json"
