#!/usr/bin/env bash
# Tests of the gated CUDA allocators against NVIDIA's real headers and
# libraries, on a machine without a GPU (a GPU machine: scripts/gpu-check.sh).
#
#  * installs the PyPI wheels nvidia-cuda-runtime-cu12, nvidia-nvjpeg-cu12,
#    nvidia-cuda-nvcc-cu12 (headers) and nvidia-nvimgcodec-cu12 (header) into
#    target/cuda-wheels, and Pillow into target/cuda-tools, once;
#  * compiles examples/allocator_types.c as C and as C++ with -Werror: mmpool's
#    functions fit nvjpegDevAllocatorV2_t, nvimgcodecDeviceAllocator_t and
#    PyTorch's allocator signatures with no cast;
#  * builds examples/nvjpeg_decode.c against the real nvJPEG and runs it on a
#    generated JPEG: without a GPU it must fail cleanly with the pool whole;
#  * runs tests/cuda_real_runtime.rs with MMPOOL_CUDART = the real
#    libcudart.so.12: MMPOOL_ERR_CUDA naming the CUDA error, pool whole;
#  * builds examples/cuda_ipc_handoff.c (a hand-off of device memory through
#    CUDA IPC to two consumer processes) against the real runtime; without a
#    GPU it must fail cleanly with the pool whole;
#  * runs examples/cuda_accounting.c over the stand-in runtime
#    (tests/fake_cudart) as libcudart.so.12;
#  * checks that `import mmpool.torch` without PyTorch fails with a clear error.
#
# The Rust tests over the stand-in runtime run in `cargo test` already.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/packages.sh
. scripts/lib/packages.sh
# The Python checks import the package from the checkout, which compiles its
# extension on first import.
mmpool_need_python_build

WHEELS=target/cuda-wheels
TOOLS=target/cuda-tools
OUT=target/cuda-example
NV=$WHEELS/nvidia
CC=${CC:-cc}
CXX=${CXX:-c++}
PYTHON=${PYTHON:-python3}

# Installs the CUDA wheels (one pip call: pip --target does not merge into an
# existing nvidia/ directory) and Pillow, unless they are there already.
cuda_install_wheels() {
    if [ ! -e "$NV/nvimgcodec/include/nvimgcodec.h" ] || [ ! -e "$NV/cuda_runtime/lib/libcudart.so.12" ] \
        || [ ! -e "$NV/nvjpeg/lib/libnvjpeg.so.12" ] || [ ! -d "$NV/cuda_nvcc/include/crt" ]; then
        rm -rf "$WHEELS"
        "$PYTHON" -m pip install --quiet --disable-pip-version-check --no-deps --target "$WHEELS" \
            nvidia-cuda-runtime-cu12 nvidia-nvjpeg-cu12 nvidia-cuda-nvcc-cu12 nvidia-nvimgcodec-cu12
    fi
    if ! PYTHONPATH=$TOOLS "$PYTHON" -c "import PIL" 2>/dev/null; then
        rm -rf "$TOOLS"
        "$PYTHON" -m pip install --quiet --disable-pip-version-check --target "$TOOLS" pillow
    fi
}

cuda_includes() {
    echo "-Iinclude -I$NV/cuda_runtime/include -I$NV/cuda_nvcc/include -I$NV/nvjpeg/include -I$NV/nvimgcodec/include"
}

# The library as its SONAME (libmmpool.so.0) for programs linked against it.
cuda_stage_library() {
    mkdir -p "$OUT"
    ln -sf ../debug/libmmpool.so "$OUT/libmmpool.so.0"
}

# A JPEG file: $1 = path, $2 = width, $3 = height.
cuda_make_jpeg() {
    PYTHONPATH=$TOOLS "$PYTHON" - "$1" "$2" "$3" <<'PY'
import sys
from PIL import Image
path, w, h = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
img = Image.new("RGB", (w, h))
img.putdata([((x * 7) % 256, (y * 5) % 256, ((x + y) * 3) % 256) for y in range(h) for x in range(w)])
img.save(path, quality=90)
PY
}

cuda_build_nvjpeg_example() {
    # shellcheck disable=SC2046
    "$CC" -std=c11 -Wall -Wextra -Werror $(cuda_includes) examples/nvjpeg_decode.c -o "$OUT/nvjpeg_decode" \
        target/debug/libmmpool.so -L"$NV/nvjpeg/lib" -l:libnvjpeg.so.12 -L"$NV/cuda_runtime/lib" -l:libcudart.so.12
}

# $1 = the libcudart.so.12 to link against (a directory holding it).
cuda_build_accounting_example() {
    # shellcheck disable=SC2046
    "$CC" -std=c11 -Wall -Wextra -Werror $(cuda_includes) examples/cuda_accounting.c -o "$OUT/cuda_accounting" \
        target/debug/libmmpool.so -L"$1" -l:libcudart.so.12
}

cuda_build_ipc_example() {
    # shellcheck disable=SC2046
    "$CC" -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -pedantic $(cuda_includes) examples/cuda_ipc_handoff.c \
        -o "$OUT/cuda_ipc_handoff" target/debug/libmmpool.so -L"$NV/cuda_runtime/lib" -l:libcudart.so.12
}

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

main() {
    cargo build --quiet
    cuda_install_wheels
    cuda_stage_library

    echo "-- allocator signatures against nvjpeg.h, nvimgcodec.h, cuda_runtime_api.h (C and C++, -Werror)"
    # shellcheck disable=SC2046
    "$CC" -std=c11 -Wall -Wextra -Werror -pedantic $(cuda_includes) -c examples/allocator_types.c -o "$OUT/allocator_types_c.o"
    # shellcheck disable=SC2046
    "$CXX" -x c++ -std=c++17 -Wall -Wextra -Werror -pedantic $(cuda_includes) -c examples/allocator_types.c -o "$OUT/allocator_types_cxx.o"

    echo "-- examples/nvjpeg_decode.c with the real nvJPEG and libcudart.so.12, no GPU"
    cuda_build_nvjpeg_example
    cuda_make_jpeg "$OUT/sample.jpg" 64 48
    local log=$OUT/nvjpeg_decode.log status=0
    LD_LIBRARY_PATH=$OUT:$NV/nvjpeg/lib:$NV/cuda_runtime/lib "$OUT/nvjpeg_decode" "$OUT/sample.jpg" 16 >"$log" 2>&1 || status=$?
    cat "$log"
    if command -v nvidia-smi >/dev/null 2>&1; then
        echo "(a GPU is present: the no-GPU expectations are skipped; run scripts/gpu-check.sh)"
    else
        [ "$status" -eq 1 ] || fail "nvjpeg_decode exited $status, expected 1 (a clean failure)"
        grep -q "nvjpegCreateExV2 failed: NVJPEG_STATUS_" "$log" || fail "nvjpeg_decode gave no reason"
        grep -q "cudaError" "$log" || fail "nvjpeg_decode did not name the CUDA error"
        [ "$(grep -c 'available == total' "$log")" -eq 2 ] || fail "the pool was not whole"

        echo "-- tests/cuda_real_runtime.rs with MMPOOL_CUDART=$NV/cuda_runtime/lib/libcudart.so.12"
        MMPOOL_CUDART=$PWD/$NV/cuda_runtime/lib/libcudart.so.12 \
            cargo test --quiet --test cuda_real_runtime -- --ignored --nocapture
    fi

    echo "-- examples/cuda_ipc_handoff.c with the real libcudart.so.12"
    cuda_build_ipc_example
    if ! command -v nvidia-smi >/dev/null 2>&1; then
        local ipc_log=$OUT/cuda_ipc_handoff.log ipc_status=0
        LD_LIBRARY_PATH=$OUT:$NV/cuda_runtime/lib "$OUT/cuda_ipc_handoff" >"$ipc_log" 2>&1 || ipc_status=$?
        cat "$ipc_log"
        [ "$ipc_status" -eq 1 ] || fail "cuda_ipc_handoff exited $ipc_status, expected 1 (a clean failure)"
        grep -q "producer: cudaMalloc: " "$ipc_log" || fail "cuda_ipc_handoff did not name the CUDA error"
        grep -q "^producer: \([0-9]*\) of \1 bytes available" "$ipc_log" || fail "the pool was not whole"
    fi

    echo "-- examples/cuda_accounting.c over the stand-in runtime as libcudart.so.12"
    mkdir -p "$OUT/fake"
    "$CC" -Wall -Wextra -Werror -shared -fPIC -Wl,-soname,libcudart.so.12 \
        -o "$OUT/fake/libcudart.so.12" tests/fake_cudart/fake_cudart.c -lpthread
    cuda_build_accounting_example "$OUT/fake"
    LD_LIBRARY_PATH=$OUT/fake:$OUT "$OUT/cuda_accounting" 64 8

    echo "-- import mmpool.torch without PyTorch"
    if "$PYTHON" -c "import torch" 2>/dev/null; then
        echo "(PyTorch is installed: skipped)"
    else
        PYTHONPATH=python "$PYTHON" - <<'PY'
try:
    import mmpool.torch  # noqa: F401
except ImportError as e:
    message = str(e)
    assert "PyTorch" in message and "pip install torch" in message, message
    print(f"ImportError: {message}")
else:
    raise SystemExit("FAIL: import mmpool.torch succeeded without PyTorch")
PY
    fi
    echo "CUDA tests passed"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    main "$@"
fi
