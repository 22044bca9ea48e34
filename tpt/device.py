"""What the machine's processor can do, from what torch reports about it (never from model or machine names)."""
import os
import platform

DTYPES = ("auto", "float32", "bfloat16", "float16")
# oneDNN ISA caps (ONEDNN_MAX_CPU_ISA) that still include the AVX-512 BF16 (or AMX) instructions.
ONEDNN_BF16_ISAS = {"ALL", "AVX512_CORE_BF16", "AVX10_1_512", "AVX512_CORE_FP16", "AVX10_1_512_AMX",
                    "AVX512_CORE_AMX", "AVX10_1_512_AMX_FP16", "AVX512_CORE_AMX_FP16", "AVX10_2_512",
                    "AVX10_2_512_AMX_2"}


def cpu_has_bf16():
    """True when the CPU multiplies bfloat16 matrices in hardware (x86: AVX-512 BF16 or AMX tiles; Arm: the BF16
    extension, as oneDNN reports it) and torch's kernels may use those units. Without them torch emulates bf16
    matmuls, slower than float32: so also False when torch runs below AVX-512 (ATEN_CPU_CAPABILITY=avx2 or a
    build without it) or oneDNN is capped below its bf16 instructions (ONEDNN_MAX_CPU_ISA=AVX2)."""
    import torch

    if platform.machine().lower() in ("x86_64", "amd64", "i686", "i386"):
        if not torch.backends.cpu.get_cpu_capability().startswith("AVX512"):
            return False
        isa = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "ALL").upper()
        if isa not in ONEDNN_BF16_ISAS:
            return False
        # oneDNN's own bf16 flag is also true on AVX-512 CPUs that only emulate bf16, so ask for the instructions.
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def auto_dtype(device):
    """The dtype '--dtype auto' means on `device` ('cpu' or 'cuda'): bfloat16 where its matrix units take it
    (a CUDA device with bf16, a CPU with bf16 units), float32 elsewhere. Returned as a name, e.g. 'bfloat16'."""
    import torch

    if device == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    return "bfloat16" if cpu_has_bf16() else "float32"


def torch_dtype(dtype, device):
    """The torch dtype for a --dtype choice on `device`; 'auto' goes through auto_dtype."""
    import torch

    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    return getattr(torch, auto_dtype(device) if dtype == "auto" else dtype)


# glibc mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4


def reuse_freed_memory():
    """On a Linux CPU, let glibc's malloc keep freed memory for the next allocation instead of returning it to the
    kernel. A tensor over malloc's mmap threshold (at most 32 MiB) otherwise gets fresh pages every time, and the
    page faults that fill them cost as much as the arithmetic: a training step frees and reallocates hundreds of
    MiB of logit tiles and gradients (docs/benchmarks.md#train). Resident memory stays at its peak instead of
    shrinking between steps. A no-op elsewhere (another libc, macOS, Windows) and with CUDA, whose tensors live in
    torch's own caching allocator."""
    import ctypes

    import torch

    if platform.system() != "Linux" or torch.cuda.is_available():
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # musl and others: keep their allocator as it is
        return
    libc.mallopt(M_MMAP_MAX, 0)
    libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1)
