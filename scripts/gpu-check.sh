#!/usr/bin/env bash
# Checks the gated CUDA allocators on a machine with an NVIDIA GPU (not part
# of scripts/test.sh, which runs without one):
#
#  1. examples/nvjpeg_decode.c decodes a real 1920x1080 JPEG with nvJPEG, its
#     buffers charged to an mmpool budget; the pool is whole afterwards;
#  2. examples/cuda_accounting.c compares the pool's bytes in use with what
#     cudaMemGetInfo says the device lost, and checks both come back;
#  3. examples/cuda_ipc_handoff.c hands device memory to two consumer
#     processes through CUDA IPC and a shared pool's hand-off: both read it
#     intact, the producer frees it after the hand-off finishes, the pool is
#     whole;
#  4. if PyTorch with CUDA is importable: tensors allocated through
#     mmpool.torch.install_allocator() are charged to the global pool, the
#     device agrees (torch.cuda.mem_get_info), and an allocation beyond the
#     budget aborts the process loudly;
#  5. examples/arena_ipc.c: a producer decodes a JPEG with nvJPEG into a
#     placed shared pool's device arena (nvJPEG's buffers and the image are
#     placed leases in it: one cudaMalloc) and hands the image off to two
#     consumer processes, which attach the pool, open the exported arena once
#     (CUDA IPC), turn the token into a device pointer, read back the
#     producer's pixel sum and complete their parts.
#
# CUDA wheels already in target/cuda-wheels (see scripts/test-cuda.sh) are not
# downloaded again, so a machine without network access can be given them.
#
# Without `nvidia-smi` (or with no GPU visible to it) it prints
# "no GPU: skipped" and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "no GPU: skipped"
    exit 0
fi
nvidia-smi -L

# shellcheck source=scripts/test-cuda.sh
source scripts/test-cuda.sh

# A GPU machine without a Rust toolchain can run this on a library built
# elsewhere (same architecture): bring target/debug/libmmpool.so along.
if command -v cargo >/dev/null 2>&1; then
    cargo build --quiet
elif [ -f target/debug/libmmpool.so ]; then
    echo "no cargo here: using the prebuilt target/debug/libmmpool.so"
else
    fail "no cargo to build the library, and no prebuilt target/debug/libmmpool.so"
fi
cuda_install_wheels
cuda_stage_library
export LD_LIBRARY_PATH=$PWD/$OUT:$PWD/$NV/nvjpeg/lib:$PWD/$NV/cuda_runtime/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

echo "== 1. nvJPEG decode of a real JPEG through mmpool's allocator"
cuda_build_nvjpeg_example
cuda_make_jpeg "$OUT/frame.jpg" 1920 1080
log=$OUT/gpu_nvjpeg.log
"$OUT/nvjpeg_decode" "$OUT/frame.jpg" 256 | tee "$log"
grep -q "^decoded: RGB 1920x1080" "$log" || fail "nvjpeg_decode did not decode"
[ "$(grep -c 'available == total' "$log")" -eq 2 ] || fail "the pool was not whole after decoding"
grep "^pool:" "$log" | head -1 | grep -qv "peak_in_use=0 " || fail "nothing was charged to the pool"

echo "== 2. the pool's accounting against cudaMemGetInfo"
cuda_build_accounting_example "$NV/cuda_runtime/lib"
"$OUT/cuda_accounting" 256 16

echo "== 3. a hand-off of device memory to two processes through CUDA IPC"
cuda_build_ipc_example
log=$OUT/gpu_ipc.log
"$OUT/cuda_ipc_handoff" | tee "$log"
[ "$(grep -c 'through CUDA IPC, intact' "$log")" -eq 2 ] || fail "the consumers did not both read the frame intact"
grep -q "^cuda_ipc_handoff: ok" "$log" || fail "cuda_ipc_handoff failed"

echo "== 4. PyTorch through mmpool.torch"
if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "PyTorch with CUDA is not importable: skipped"
else
    PYTHONPATH=python${PYTHONPATH:+:$PYTHONPATH} "$PYTHON" - <<'PY'
import subprocess, sys, textwrap

import torch
import mmpool
import mmpool.torch

MIB = 1 << 20
pool = mmpool.init_global_pool(0.25)           # 256 MiB for this process
mmpool.torch.install_allocator(timeout=5)

free0, _ = torch.cuda.mem_get_info()
tensors = [torch.empty(16 * MIB, dtype=torch.uint8, device="cuda") for _ in range(4)]
torch.cuda.synchronize()
in_use = pool.stats().in_use_bytes
free1, _ = torch.cuda.mem_get_info()
lost = free0 - free1
print(f"4 tensors of 16 MiB: pool in use {in_use} bytes, device lost {lost} bytes (ratio {lost / in_use:.3f})")
assert in_use == 64 * MIB, in_use
assert in_use <= lost <= in_use + 64 * MIB, (in_use, lost)

del tensors
torch.cuda.synchronize()
assert pool.stats().in_use_bytes == 0, pool.stats()
print("freed: the pool is whole again")

# Beyond the budget: the process must abort with the reason, not get a tensor.
child = textwrap.dedent("""
    import torch, mmpool, mmpool.torch
    mmpool.init_global_pool(0.25)
    mmpool.torch.install_allocator(timeout=1)
    x = torch.empty(512 << 20, dtype=torch.uint8, device="cuda")
    print("allocated", x.data_ptr())
""")
r = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True)
print(f"over-budget child: exit {r.returncode}; stderr: {r.stderr.strip().splitlines()[-1:]}")
assert r.returncode < 0 and "allocated" not in r.stdout, (r.returncode, r.stdout)
assert "mmpool: aborting: mmpool_torch_alloc" in r.stderr, r.stderr
print("PyTorch checks passed")
PY
fi

# $1 = how many consumer processes read the producer's image.
arena_ipc_check() {
    local consumers=$1 log=$OUT/gpu_arena_ipc.log
    cuda_build_arena_example
    "$OUT/arena_ipc" "$OUT/frame.jpg" "$consumers" 128 | tee "$log"
    grep -q "^producer: decoded RGB 1920x1080 into the arena" "$log" || fail "arena_ipc did not decode into the arena"
    [ "$(grep -c '^consumer .* through CUDA IPC, pixel sum .* (matches)' "$log")" -eq "$consumers" ] \
        || fail "not every consumer read the producer's bytes through CUDA IPC"
    grep -q "^producer: all $consumers consumers read the image and completed their parts" "$log" \
        || fail "the hand-off did not finish"
    grep -q "^producer: pool available=.* -> whole" "$log" || fail "the pool was not whole afterwards"
}

echo "== 5. a device arena: nvJPEG decodes into it, two consumer processes read it through CUDA IPC"
arena_ipc_check 2

echo "GPU checks passed"
