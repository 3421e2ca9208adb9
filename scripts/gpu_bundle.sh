#!/usr/bin/env bash
# Prepare .gpu/ (git-ignored) for a lent GPU machine, which has no package index (DESIGN section 6):
#   .gpu/llama_cpp_python-<version>-trimmed.tar.gz   the source, trimmed to ~8 MB (../shared's script)
#   .gpu/wheels/                                      what the project imports that the machine lacks
# Then, on the machine (the device tool's `run`, with carry [".gpu"]):
#   bash scripts/device_check.sh tests     # CUDA build, GPU tests, capture cost (~8 min)
#   bash scripts/device_check.sh bench     # the Mixtral-size cost pair's bench
#
#   scripts/gpu_bundle.sh [PYTHON_VERSION]   (default 3.12, the GPU machine's)
set -euo pipefail
cd "$(dirname "$0")/.."
pyver="${1:-3.12}"
ver=$(sed -n 's/.*"llama-cpp-python==\([^"]*\)".*/\1/p' pyproject.toml)
[ -n "$ver" ] || { echo "error: pyproject.toml pins no llama-cpp-python version" >&2; exit 2; }
mk="../shared/scripts/make-cuda-sdist.sh"
if [ ! -f ".gpu/llama_cpp_python-$ver-trimmed.tar.gz" ]; then
    [ -f "$mk" ] || { echo "error: $mk not found (it trims the llama-cpp-python source)" >&2; exit 2; }
    bash "$mk" "$ver" .gpu >/dev/null
fi
rm -rf .gpu/wheels
# pure-Python or manylinux wheels for that Python; --no-deps: numpy, torch, pytest, hypothesis,
# rich and typer are on the machine already, and a second numpy would shadow its own
python3 -m pip download -q --no-deps --only-binary :all: --python-version "$pyver" \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --implementation cp \
    -d .gpu/wheels gguf pyyaml tqdm diskcache jinja2 markupsafe 2>&1 | grep -v "^WARNING: Location" || true
ls .gpu/wheels >/dev/null
echo "prepared .gpu/ for Python $pyver:"
ls -la .gpu .gpu/wheels | grep -v "^total"
