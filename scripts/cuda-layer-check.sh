#!/usr/bin/env bash
# The TensorRT backend's CUDA layer on a real NVIDIA GPU, once per CUDA runtime major: pinned and
# device buffers, copies in and out, stream sync, CUDA graph capture and replay, named errors, and
# the whole TensorRTBackend with an identity-engine double of tensorrt (no TensorRT needed).
# Needs: an NVIDIA GPU and driver, python3 with numpy and pytest (torch and onnx for the shared
# test fixtures). Optional: .whl/nvidia_cuda_runtime_cu1{1,2}-*.whl (pip download, see
# docs/cuda-layer.md) to run against the CUDA 11 and 12 runtimes too, as JetPack 5 and 6 have.
# Fails if any GPU test is skipped: a run without a GPU proves nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-python3}"
export PYTHONPATH="$PWD/python/src:$PWD/python/tests${PYTHONPATH:+:$PYTHONPATH}"
echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
"$py" -c 'import sys, numpy; print("python", sys.version.split()[0], "numpy", numpy.__version__)'

runtimes=("")
libs="$(mktemp -d)"
for wheel in .whl/nvidia_cuda_runtime_cu11-*.whl .whl/nvidia_cuda_runtime_cu12-*.whl; do
  [ -f "$wheel" ] || continue
  name="$(basename "$wheel" .whl)"
  mkdir -p "$libs/$name"
  "$py" -m zipfile -e "$wheel" "$libs/$name"
  runtimes+=("$(find "$libs/$name" -name 'libcudart.so.1*' | head -n 1)")
done

failed=0
for cudart in "${runtimes[@]}"; do
  echo
  echo "=== libcudart: ${cudart:-default search (ldconfig, /usr/local/cuda)}"
  log="$(mktemp)"
  JETPOLICY_TEST_CUDART="$cudart" "$py" -m pytest -p no:cacheprovider -q -s -rs \
    --rootdir python -c python/pyproject.toml python/tests/test_cuda_runtime.py -m gpu 2>&1 | tee "$log" || failed=1
  if grep -qE '[0-9]+ skipped' "$log" || ! grep -qE '[0-9]+ passed' "$log"; then
    echo "GPU tests were skipped or none passed: this run does not count" >&2
    failed=1
  fi
done
rm -rf "$libs"
exit "$failed"
