"""What this machine runs fast, checked once, and the dtype ``"auto"`` picks from it.

CPUs differ: AVX-512 machines with AVX512-BF16 or AMX compute bf16 matmuls natively (2-3x
float32), while AVX2-only CPUs have no bf16 arithmetic at all (oneDNN refuses its bf16 kernels
there and torch's own bf16 matmul is ~100x slower than float32). The fast paths in
:mod:`florence.accel` ask :func:`onednn_max_rows` before they call oneDNN and fall back to
the plain torch op otherwise; :func:`resolve_dtype` turns ``"auto"`` into bf16 where it is native
and float32 (fp16 for inference on a GPU without bf16) elsewhere.

    >>> from florence import hardware
    >>> hardware.describe()
    'cpu: AVX2, oneDNN linears: float32 (up to 128 rows), native bf16: no'
    >>> hardware.resolve_dtype("auto", "cpu")
    torch.float32

``FLORENCE_ONEDNN=0`` in the environment turns the oneDNN linears off (plain ``F.linear``), and
:func:`limited` makes a block of code run as if the machine had fewer capabilities (tests compare
each fast path with its fallback this way, on any machine).
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
import platform
import warnings

import torch

__all__ = ["cpu_capability", "onednn_dtypes", "onednn_max_rows", "native_bf16", "resolve_dtype", "describe",
           "limited", "default_device"]

logger = logging.getLogger("florence")

_DTYPE_NAMES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
                "float16": torch.float16, "fp16": torch.float16, "half": torch.float16, "float": torch.float32}
_limits: dict | None = None  # set by limited()


def cpu_capability() -> str:
    """ATen's CPU kernel level: ``"AVX512"``, ``"AVX2"``, ``"DEFAULT"``, ``"SVE256"``, ..."""
    return torch.backends.cpu.get_cpu_capability()


def _probe_onednn(dtype: torch.dtype) -> bool:
    """Whether oneDNN's linear kernels (plain, fused residual, packed weight for bf16) run in
    ``dtype`` on this machine: one tiny call of each, errors caught. A check of CPU flags alone is not
    enough: ``ONEDNN_MAX_CPU_ISA`` lowers what oneDNN uses without changing the flags, and CPUs with
    AVX-NE-CONVERT run oneDNN's bf16 without AVX-512."""
    if not (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")):
        return False
    x, w, b = torch.ones(2, 16, dtype=dtype), torch.ones(8, 16, dtype=dtype), torch.zeros(8, dtype=dtype)
    try:
        y = torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [None], "")
        torch.ops.mkldnn._linear_pointwise.binary(x, y, w, b, "add")
        if dtype == torch.bfloat16:
            packed = torch.ops.mkldnn._reorder_linear_weight(w, None)
            y = torch.ops.mkldnn._linear_pointwise(x, packed, b, "none", [None], "")
    except RuntimeError:
        return False
    return bool((y.float() == 16).all())


@functools.cache
def _onednn_dtypes() -> frozenset:
    if os.environ.get("FLORENCE_ONEDNN", "1") == "0":
        return frozenset()
    return frozenset(d for d in (torch.float32, torch.bfloat16) if _probe_onednn(d))


def onednn_dtypes() -> frozenset:
    """The dtypes in which florence's oneDNN linears run here (probed once): ``{float32, bfloat16}``
    with AVX-512 (or AVX-NE-CONVERT), ``{float32}`` on AVX2-only CPUs, empty without oneDNN or with
    ``FLORENCE_ONEDNN=0``."""
    found = _onednn_dtypes()
    return found if _limits is None else found & _limits["onednn"]


# Where oneDNN's linear wins on a CPU without AVX-512 (measured on an AVX2 EPYC, fp32, BART-base
# widths): matmuls of up to ~128 rows (decoding steps); above that MKL's sgemm is faster, forward
# and backward, so florence leaves them to it. (benchmarks/vs_transformers.py prints both kernels.)
_AVX2_MAX_ROWS = 128
_ANY_ROWS = 2 ** 62
_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


@functools.cache
def _max_rows() -> int:
    capability = cpu_capability()
    if capability.startswith("AVX512"):
        return _ANY_ROWS  # oneDNN wins at every size measured (AVX-512 machines, fp32 and bf16)
    if capability.startswith("AVX2"):
        return _AVX2_MAX_ROWS
    return 0  # not measured on other CPUs: the plain op


def onednn_max_rows(dtype: torch.dtype) -> int:
    """The largest number of rows (``x.numel() // in_features``) for which florence's linears call
    oneDNN in ``dtype`` here, 0 for never: any size on AVX-512, decoding-sized matmuls on AVX2, none
    where oneDNN does not run the dtype (:func:`onednn_dtypes`) or on CPUs it was not measured on."""
    return _max_rows() if dtype in onednn_dtypes() else 0


def native_bf16(device="cpu") -> bool:
    """Whether bf16 arithmetic is native (fast) on ``device``: a CUDA GPU that supports it, or a
    CPU with AVX512-BF16 or AMX (x86) / BF16 instructions (Arm) whose oneDNN bf16 kernels run."""
    device = torch.device(device)
    if _limits is not None and not _limits["native_bf16"]:
        return False
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu" or torch.bfloat16 not in onednn_dtypes():
        return False
    if _X86:  # AVX-512 alone emulates bf16 with fp32 FMAs: native needs AVX512-BF16 or AMX
        return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return torch.ops.mkldnn._is_mkldnn_bf16_supported()


def default_device() -> torch.device:
    """The first CUDA GPU when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


_reported: set = set()


def _once(key, report, message: str) -> None:
    if key not in _reported:
        _reported.add(key)
        report(message)


def resolve_dtype(dtype, device="cpu", training: bool = False, log=None) -> torch.dtype | None:
    """``dtype`` as a torch dtype (``None`` stays ``None``: the model's own). ``"auto"`` is bf16 where
    :func:`native_bf16` says so, else float32, except that inference on a CUDA GPU without bf16 uses
    float16 (training would need loss scaling for it). The choice for ``"auto"`` is reported once per
    device through ``log`` (default: the ``florence`` logger at INFO). An explicit bf16 where it is
    not native runs (through the fallbacks), with a warning that it is slow."""
    if dtype is None or isinstance(dtype, torch.dtype):
        choice = dtype
    elif not isinstance(dtype, str) or (dtype != "auto" and dtype.lower() not in _DTYPE_NAMES):
        raise ValueError(f"dtype must be 'auto', a torch dtype or one of {sorted(_DTYPE_NAMES)}, got {dtype!r}")
    elif dtype == "auto":
        device = torch.device(device)
        if native_bf16(device):
            choice = torch.bfloat16
        elif device.type == "cuda" and not training:
            choice = torch.float16
        else:
            choice = torch.float32
        _once(("auto", str(device), training, choice), log or logger.info,
              f"florence: dtype 'auto' -> {str(choice).replace('torch.', '')} on {device} ({describe()})")
        return choice
    else:
        choice = _DTYPE_NAMES[dtype.lower()]
    if choice == torch.bfloat16 and torch.device(device).type == "cpu" and not native_bf16("cpu"):
        _once(("slow-bf16",), lambda m: warnings.warn(m, stacklevel=3),
              f"bfloat16 requested on a CPU without native bf16 ({describe()}): it runs through plain torch "
              "ops and is much slower than float32 here; dtype='auto' picks float32 on this machine")
    return choice


def describe() -> str:
    """One line: the CPU kernel level, the oneDNN linear dtypes and native bf16, e.g. for logs."""
    names = sorted(str(d).replace("torch.", "") for d in onednn_dtypes() if onednn_max_rows(d))
    rows = "" if not names or _max_rows() == _ANY_ROWS else f" (up to {_max_rows()} rows)"
    return (f"cpu: {cpu_capability()}, oneDNN linears: {', '.join(names) or 'off'}{rows}, "
            f"native bf16: {'yes' if native_bf16('cpu') else 'no'}")


@contextlib.contextmanager
def limited(onednn=(), native_bf16: bool = False):
    """Run the block as if oneDNN's linears ran only in the dtypes ``onednn`` (default: none, every
    linear through ``F.linear``) and bf16 were native or not: ``limited(onednn=[torch.float32])`` is
    what an AVX2-only CPU has. Not thread-safe; for tests and comparisons."""
    global _limits
    before = _limits
    _limits = {"onednn": frozenset(onednn), "native_bf16": native_bf16}
    try:
        yield
    finally:
        _limits = before
