#!/usr/bin/env bash
# Issue 10's GPU checks, one stage per call on a lent GPU machine (offline, Python with torch,
# numpy, pytest, hypothesis, rich, typer, cmake, ninja, scikit-build-core). Prepare .gpu/ here
# first with scripts/gpu_bundle.sh, then call the device tool's `run` with carry [".gpu"]:
#
#   bash scripts/device_check.sh tests   # CUDA build (~5 min on 16 cores), the GPU tests and the
#                                        # backend's tests on it, capture cost on the demo target
#   bash scripts/device_check.sh bench   # the Mixtral-size cost pair (8 layers of 4096 hidden,
#                                        # 14336 ff, 8 experts, 23 GB F16): capture cost, then
#                                        # bench off/static/heuristic/learned at agreement 0.95 and 0.5
#
# Everything it prints also goes to $OUT (the device tool brings that folder back; ./gpu-out
# elsewhere). The build lives in ~/.cache/cascade-tui/offload/ and is reused while the machine is
# held, so call `bench` right after `tests`. BACKEND=vulkan rehearses the whole thing on a machine
# without a GPU (Mesa's lavapipe; the pair is then the tiny one).
set -uo pipefail
cd "$(dirname "$0")/.."
stage="${1:-tests}"
case "$stage" in tests|bench) ;; *) echo "usage: scripts/device_check.sh tests|bench" >&2; exit 2 ;; esac
backend="${BACKEND:-cuda}"
out="${OUT:-$PWD/gpu-out}"
mkdir -p "$out"
exec > >(tee -a "$out/$stage.log") 2>&1
start=$(date +%s)
left() { local l=$(( ${BUDGET_S:-570} - ($(date +%s) - start) )); [ "$l" -gt 5 ] && echo "$l" || echo 5; }
step() { echo; echo "== $* ($(( $(date +%s) - start )) s)"; }
PY="${PYTHON:-python3}"
export PYTHON="$PY"

step "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
"$PY" --version; nproc
deps="/tmp/cascade-deps"
if [ -d .gpu/wheels ]; then
    "$PY" -m pip install -q --no-index --no-deps --upgrade --target "$deps" .gpu/wheels/*.whl || exit 1
    export PYTHONPATH="$deps${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ "$backend" = cuda ]; then
    sdist=$(ls .gpu/llama_cpp_python-*-trimmed.tar.gz 2>/dev/null | head -1)
    [ -n "$sdist" ] || { echo "error: no .gpu/llama_cpp_python-*-trimmed.tar.gz (run scripts/gpu_bundle.sh here first)"; exit 2; }
    export LLAMA_SDIST="$PWD/$sdist" PIP_NO_INDEX=1 CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)"
    export CUDA_ARCH="${CUDA_ARCH:-90}"
else
    export GGML_VK_VISIBLE_DEVICES="${GGML_VK_VISIBLE_DEVICES:-0}"
fi

step "llama-cpp-python with $backend"
# builds (or finds) it, lists the devices it sees on stderr, prints its folder
site=$(bash scripts/offload_check.sh "$backend" --build-only | tail -1) || { echo "build failed, or no GPU seen"; exit 1; }
[ -d "$site/llama_cpp" ] || { echo "build failed: $site"; exit 1; }
export PYTHONPATH="$site:$PYTHONPATH"

capture() {  # model, label
    step "routing capture cost: $2"
    timeout "$(left)" "$PY" scripts/bench_capture_split.py --model "$1" --sizes 1,2,5,9,17 --pairs 40 \
        --json "$out/capture-$2.json"
}

if [ "$stage" = tests ]; then
    step "GPU tests and the llama.cpp backend's tests"
    timeout "$(left)" "$PY" -m pytest -p no:cacheprovider -q -rs tests/test_gpu_offload.py \
        tests/test_llamacpp_backend.py --junitxml "$out/pytest.xml"
    echo "pytest exit: $?"
    demo=$("$PY" -c "from cascade_tui.demo import demo_default_target; print(demo_default_target())")
    capture "$demo" demo
else  # bench
    size="${SIZE:-gpu}"; [ "$backend" = cuda ] || size=tiny
    pairs="${PAIRS:-/tmp/cost-pair}"
    step "cost pair ($size): writing it (a few minutes for the 23 GB one)"
    target=$(timeout "$(left)" "$PY" -c "
import sys; from pathlib import Path
from cascade_tui.factory.cost_pair import write_cost_pair
print(write_cost_pair(Path(sys.argv[1]) / sys.argv[2], size=sys.argv[2], agreement=[0.5, 0.95]).target)
" "$pairs" "$size" | tail -1) || exit 1
    ls -la "$(dirname "$target")"
    capture "$target" "pair-$size"
    step "bench: the pair at agreement 0.95 and 0.5"
    timeout "$(left)" "$PY" scripts/bench_cost_pairs.py --size "$size" --pairs "$pairs" --out "$out/pair-bench" \
        --agreements 0.95,0.5 --phased "" --tokens 64 --prompts 3 \
        --policies off,static:2,static:4,static:8,static:16,heuristic,cascade,learned
fi
step "done"
