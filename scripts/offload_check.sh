#!/usr/bin/env bash
# Build a llama-cpp-python that offloads to a GPU and run the GPU tests (tests/test_gpu_offload.py,
# marked `gpu`) and the llama.cpp backend's own tests against it (issue 10).
#
#   scripts/offload_check.sh vulkan [pytest args]   # any Debian/Ubuntu machine, no GPU needed
#   scripts/offload_check.sh cuda   [pytest args]   # a CUDA host (nvcc on PATH)
#   scripts/offload_check.sh cuda --build-only      # build (or find) it, print its folder, run nothing
#
# vulkan: ggml's Vulkan backend on Mesa's lavapipe (llvmpipe), a Vulkan driver that runs on the
#   CPU. llama.cpp sees it as a GPU, so every offload path runs for real: layers in device buffers,
#   routing read back from them, the default `--n-gpu-layers`. It installs libvulkan1,
#   mesa-vulkan-drivers and glslc with apt when they are missing, and takes Vulkan and SPIR-V
#   headers new enough for ggml (Debian 12's are too old) from Debian 13's packages, unpacked into
#   the build folder (nothing system-wide).
# cuda: CMAKE_CUDA_ARCHITECTURES from $CUDA_ARCH (default: native).
#
# The build goes to $OFFLOAD_DIR (default ~/.cache/cascade-tui/offload/<backend>-<version>) with
# `pip install --target --no-cache-dir`: never into pip's wheel cache, where it would replace the
# project's CPU build of the same version. A finished build is reused. The tests then run with
# PYTHONPATH=<that folder>, so `import llama_cpp` loads it instead of the venv's.
# $LLAMA_SDIST: a llama-cpp-python source tarball to build (offline hosts: see DESIGN section 6,
#   which makes a trimmed one); otherwise pip downloads the pinned version's sdist.
# Run it from the project's venv (python with the project and its dev extras installed).
# Exit status: pytest's; 2 for a usage error; 3 when this machine cannot provide the GPU build
# (packages, downloads or the build itself failed: CI then warns instead of failing).
set -euo pipefail
unavailable() { echo "offload_check: $*" >&2; exit 3; }
cd "$(dirname "$0")/.."
backend="${1:-}"
case "$backend" in
    vulkan|cuda) shift ;;
    *) echo "usage: scripts/offload_check.sh vulkan|cuda [--build-only] [pytest args]" >&2; exit 2 ;;
esac
build_only=""
if [ "${1:-}" = "--build-only" ]; then build_only=1; shift; fi
PY="${PYTHON:-python}"
ver=$(sed -n 's/.*"llama-cpp-python==\([^"]*\)".*/\1/p' pyproject.toml)
[ -n "$ver" ] || { echo "error: pyproject.toml pins no llama-cpp-python version" >&2; exit 2; }
dir="${OFFLOAD_DIR:-$HOME/.cache/cascade-tui/offload/$backend-$ver}"
site="$dir/site"
mkdir -p "$dir"
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo -n"

extra_cmake=""
if [ "$backend" = vulkan ]; then
    if ! { [ -e /usr/lib/x86_64-linux-gnu/libvulkan.so.1 ] || ldconfig -p | grep -q 'libvulkan.so.1 '; } \
        || ! ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1 || ! command -v glslc >/dev/null 2>&1; then
        echo "installing libvulkan1, mesa-vulkan-drivers (lavapipe) and glslc with apt ..." >&2
        ($SUDO apt-get update -qq && $SUDO apt-get install -y -qq libvulkan1 mesa-vulkan-drivers glslc) >/dev/null \
            || unavailable "cannot install libvulkan1, mesa-vulkan-drivers and glslc with apt"
    fi
    libvk=$(ldconfig -p | awk '/libvulkan.so.1 .*x86-64|libvulkan.so.1 .*AArch64/{print $NF; exit}')
    [ -n "$libvk" ] || libvk=$(ldconfig -p | awk '/libvulkan.so.1 /{print $NF; exit}')
    [ -n "$libvk" ] || unavailable "libvulkan.so.1 not found after installing libvulkan1"
    hdr="$dir/headers"
    if [ ! -f "$hdr/usr/include/vulkan/vulkan.hpp" ] || [ ! -d "$hdr/usr/share/cmake/SPIRV-Headers" ]; then
        echo "fetching Vulkan and SPIR-V headers from Debian 13 (trixie) ..." >&2
        arch=$(dpkg --print-architecture)
        tmp=$(mktemp -d)
        curl -fsS "https://deb.debian.org/debian/dists/trixie/main/binary-$arch/Packages.xz" -o "$tmp/P.xz" \
            && xz -d "$tmp/P.xz" || unavailable "cannot download Debian trixie's package index"
        for pkg in libvulkan-dev spirv-headers; do
            f=$(awk -v p="$pkg" '$1=="Package:"{cur=$2} cur==p && $1=="Filename:"{print $2; exit}' "$tmp/P")
            [ -n "$f" ] || unavailable "$pkg not found in Debian trixie's package index"
            curl -fsS "https://deb.debian.org/debian/$f" -o "$tmp/$pkg.deb" && dpkg-deb -x "$tmp/$pkg.deb" "$hdr" \
                || unavailable "cannot download or unpack $f"
        done
        rm -rf "$tmp"
    fi
    # ggml skips a Vulkan device of CPU type unless it is named: lavapipe is one
    export GGML_VK_VISIBLE_DEVICES="${GGML_VK_VISIBLE_DEVICES:-0}"
    extra_cmake="-DGGML_VULKAN=on -DVulkan_INCLUDE_DIR=$hdr/usr/include -DVulkan_LIBRARY=$libvk -DCMAKE_PREFIX_PATH=$hdr/usr"
else
    command -v nvcc >/dev/null 2>&1 || unavailable "nvcc not on PATH (install the CUDA toolkit)"
    extra_cmake="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCH:-native}"
fi
cmake_args="$extra_cmake -DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF"
stamp="$dir/build.stamp"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$ver $cmake_args" ] || [ ! -d "$site/llama_cpp" ]; then
    rm -rf "$site" "$stamp"
    src="${LLAMA_SDIST:-}"
    if [ -z "$src" ]; then
        "$PY" -m pip download -q --no-deps --no-binary :all: -d "$dir" "llama-cpp-python==$ver" 2>/dev/null \
            || unavailable "cannot download the llama-cpp-python $ver source"
        src="$dir/llama_cpp_python-$ver.tar.gz"
    fi
    echo "building llama-cpp-python $ver for $backend into $site (10-30 minutes on 2 cores) ..." >&2
    start=$(date +%s)
    nobi=""; [ -n "${PIP_NO_INDEX:-}" ] && nobi="--no-build-isolation"
    CMAKE_ARGS="$cmake_args" "$PY" -m pip install -q --no-deps --no-cache-dir $nobi --target "$site" "$src" \
        > "$dir/build.log" 2>&1 || { tail -30 "$dir/build.log" >&2; unavailable "the build failed (log: $dir/build.log)"; }
    echo "$ver $cmake_args" > "$stamp"
    [ -n "${LLAMA_SDIST:-}" ] || rm -f "$src"  # the download (77 MB) is not needed any more
    echo "built in $(( $(date +%s) - start )) s" >&2
fi
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
# the devices it sees (on stderr: with --build-only, stdout is the folder alone)
"$PY" - <<'EOF' >&2 || unavailable "the build loads but sees no GPU device"
import backends.llamacpp as L
L.lib.ensure_backend()
assert L.lib.llc.llama_supports_gpu_offload(), "the offload build sees no GPU device"
print("llama-cpp-python from", L.lib.lib_dir())
for d in L.lib.devices():
    print(f"  {d.kind:5} {d.label()}  {d.memory_total / 2**30:.1f} GiB")
EOF
if [ -n "$build_only" ]; then echo "$site"; exit 0; fi
exec "$PY" -m pytest -p no:cacheprovider tests/test_gpu_offload.py tests/test_llamacpp_backend.py "$@"
