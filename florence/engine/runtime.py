"""Runner pieces mmengine lacks for a robust CPU/GPU run: bf16 autocast on any device, atomic
checkpoint files, checkpoints that load under torch's ``weights_only`` default and resume exactly
(RNG state included), and a malloc setting that keeps a training step's memory for the next one."""
from __future__ import annotations

import contextlib
import os
import random
import re
import tempfile
from pathlib import Path

import numpy as np
import torch
from mmengine.fileio.backends import LocalBackend, register_backend
from mmengine.hooks import Hook
from mmengine.logging import HistoryBuffer, print_log
from mmengine.optim import OptimWrapper

from .. import hardware
from ..registry import HOOKS, OPTIM_WRAPPERS

__all__ = ["AutocastOptimWrapper", "AtomicLocalBackend", "ResumableCheckpointHook", "keep_freed_memory",
           "explain_missing_extras"]

# packages that only an extra installs, and the extra (setup.py) that does
_EXTRA_OF = {"mmcv": "downstream", "mmdet": "downstream", "mmseg": "downstream", "ftfy": "downstream",
             "deepspeed": "deepspeed"}


@contextlib.contextmanager
def explain_missing_extras(config):
    """Around loading and running ``config``: a package of an extra that is not installed (mmdet /
    mmseg / mmcv for ``configs/downstream/``, DeepSpeed for a ``strategy``), imported when the
    config loads or when mmengine builds its lazily imported objects, stops the run with the
    command that installs the extra instead of a bare ModuleNotFoundError."""
    try:
        yield
    except ModuleNotFoundError as e:
        # mmengine's lazy imports re-raise without ``name``: "Failed to import mmdet.models in ..."
        name = e.name
        if not name:
            found = re.search(r"No module named '([\w.]+)'|import of ([\w.]+) halted|Failed to import ([\w.]+)", str(e))
            name = next((g for g in found.groups() if g), "") if found else ""
        extra = _EXTRA_OF.get(name.partition(".")[0])
        if extra is None:
            raise
        raise SystemExit(f"{config} needs the {extra} extra, which is not installed ({name} is missing): "
                         f"bash tools/install.sh --{extra}  (or: pip install -e '.[{extra}]')") from e


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse (process-wide): no ``mmap`` for large blocks
    and no trimming of the heap. By default every block above 32 MB (a training step's activations
    and gradients) is a fresh ``mmap`` that the kernel faults in page by page and unmaps when freed,
    so each step pays the page faults again; kept, the next step reuses most of them (not all: a
    block that does not fit the freed space grows the heap): faster steps at the same peak resident
    memory (README "Performance"). The process keeps its peak memory until it exits, which is what a
    training run needs anyway. ``tools/train.py`` calls this unless
    ``FLORENCE_KEEP_FREED_MEMORY=0``; a no-op (``False``) without glibc."""
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_max = -1, -4  # glibc's malloc.h
    return bool(mallopt(m_mmap_max, 0)) and bool(mallopt(m_trim_threshold, -1))


@OPTIM_WRAPPERS.register_module()
class AutocastOptimWrapper(OptimWrapper):
    """Mixed precision with ``torch.autocast`` on the model's device. ``dtype="auto"`` (default)
    is bf16 where the device computes it natively (a GPU with bf16, a CPU with AVX512-BF16 or AMX)
    and no autocast (float32) elsewhere (:func:`florence.hardware.resolve_dtype`; the choice is
    logged once); ``"bfloat16"`` forces bf16 (slow where it is not native: a warning says so).
    bf16 needs no loss scaling; for fp16 on GPU use mmengine's ``AmpOptimWrapper``."""

    def __init__(self, *args, dtype: str = "auto", **kwargs):
        super().__init__(*args, **kwargs)
        if dtype != "auto":
            hardware.resolve_dtype(dtype)  # a bad name fails when the runner is built, not at the first step
        self.requested_dtype = dtype
        self.cast_dtype = None  # resolved on the model's device at the first step

    @contextlib.contextmanager
    def optim_context(self, model):
        device = next(model.parameters()).device
        if self.cast_dtype is None:
            self.cast_dtype = hardware.resolve_dtype(self.requested_dtype, device, training=True,
                                                     log=lambda m: print_log(m, logger="current"))
        with super().optim_context(model), torch.autocast(device_type=device.type, dtype=self.cast_dtype,
                                                          enabled=self.cast_dtype != torch.float32):
            yield


class AtomicLocalBackend(LocalBackend):
    """Local files written to a temporary name in the same folder, then renamed over the target:
    a crash while saving leaves the previous file intact, never a truncated one."""

    def put(self, obj: bytes, filepath) -> None:
        path = Path(filepath)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(obj)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def put_text(self, obj: str, filepath, encoding: str = "utf-8") -> None:
        self.put(obj.encode(encoding), filepath)


register_backend("atomic_local", AtomicLocalBackend, force=True)


def _plain(x):
    """numpy values -> Python numbers / tensors, recursively (weights_only-loadable types)."""
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_plain(v) for v in x)
    if isinstance(x, np.ndarray):
        return torch.from_numpy(x)
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, HistoryBuffer):
        return {_HISTORY: True, "log": torch.from_numpy(np.asarray(x._log_history, dtype=np.float64)),
                "count": torch.from_numpy(np.asarray(x._count_history, dtype=np.float64)), "max_length": x.max_length}
    return x


_HISTORY = "__florence_history_buffer__"


def _history_buffer(d: dict) -> HistoryBuffer:
    return HistoryBuffer(d["log"].numpy(), d["count"].numpy(), d["max_length"])


@HOOKS.register_module()
class ResumableCheckpointHook(Hook):
    """Makes the checkpoints a run writes loadable under torch's ``weights_only=True`` default and
    complete for an exact resume.

    mmengine stores its message hub as ``HistoryBuffer`` objects (whose pickles call ``getattr``)
    and numpy values, which ``weights_only`` refuses; this hook writes them as tensors and plain
    numbers and rebuilds them on load, so no unpickling allow-list is needed. It also saves the
    torch, numpy and Python RNG states and restores them on resume."""

    priority = "VERY_HIGH"

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        for key in ("message_hub", "meta"):
            if key in checkpoint:
                checkpoint[key] = _plain(checkpoint[key])
        np_state = np.random.get_state(legacy=False)
        checkpoint["rng_state"] = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": {"key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
                      "pos": int(np_state["state"]["pos"]), "has_gauss": int(np_state["has_gauss"]),
                      "gauss": float(np_state["gauss"])},
            "python": random.getstate(),
        }

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        scalars = checkpoint.get("message_hub", {}).get("log_scalars", {})
        for k, v in scalars.items():
            if isinstance(v, dict) and v.get(_HISTORY):
                scalars[k] = _history_buffer(v)
        state = checkpoint.get("rng_state")
        if not state:
            return
        torch.set_rng_state(state["torch"])
        if state["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
        n = state["numpy"]
        np.random.set_state({"bit_generator": "MT19937", "state": {"key": n["key"].numpy().astype(np.uint32),
                                                                     "pos": n["pos"]},
                             "has_gauss": n["has_gauss"], "gauss": n["gauss"]})
        random.setstate(_as_tuple(state["python"]))


def _as_tuple(x):
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x
