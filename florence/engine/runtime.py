"""Runner pieces mmengine lacks for a robust CPU/GPU run: bf16 autocast on any device with
token-weighted gradient accumulation, atomic checkpoint files and a checkpoint hook that a kill at
any moment survives, checkpoints that load under torch's ``weights_only`` default and resume exactly
(RNG state included), and a malloc setting that keeps a training step's memory for the next one."""
from __future__ import annotations

import collections
import contextlib
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from mmengine.fileio.backends import LocalBackend, register_backend
from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import HistoryBuffer, print_log
from mmengine.optim import OptimWrapper

from .. import hardware
from ..atomic import write_bytes
from ..registry import HOOKS, OPTIM_WRAPPERS

__all__ = ["register", "AutocastOptimWrapper", "AtomicLocalBackend", "CrashSafeCheckpointHook",
           "ResumableCheckpointHook", "keep_freed_memory"]

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
    bf16 needs no loss scaling; for fp16 on GPU use mmengine's ``AmpOptimWrapper``.

    Token-weighted updates: a loss that says how many target tokens it averages (``loss.num_tokens``,
    set by :class:`~florence.engine.Florence2Model`) counts per token across an accumulation window
    and across processes: each micro-batch's gradient is its token sum, and before the step the
    window's gradients are divided by the window's token count (summed over processes), so
    ``accumulative_counts=k`` at batch b updates as batch k*b does, whatever the padding and target
    lengths (mmengine's default averages the k micro-batch means, which weights the tokens of short
    batches more). The training-only losses on image tokens are weighted by their micro-batch's
    token count with it. One process without accumulation is left as it was (its per-token mean is
    that already). Other losses: mmengine's averaging."""

    def __init__(self, *args, dtype: str = "auto", **kwargs):
        super().__init__(*args, **kwargs)
        if dtype != "auto":
            hardware.resolve_dtype(dtype)  # a bad name fails when the runner is built, not at the first step
        self.requested_dtype = dtype
        self.cast_dtype = None  # resolved on the model's device at the first step
        self._window_tokens = 0.0

    def update_params(self, loss, step_kwargs=None, zero_kwargs=None) -> None:
        tokens = getattr(loss, "num_tokens", None)
        distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        if tokens is None or (self._accumulative_counts == 1 and not distributed):  # the mean is already per token
            return super().update_params(loss, step_kwargs, zero_kwargs)
        self.backward(loss * tokens)  # the token sum; not divided by the window length
        self._window_tokens += float(tokens)
        if not self.should_update():
            return
        total = torch.tensor(self._window_tokens, dtype=torch.float64, device=loss.device)
        processes = 1
        if distributed:  # DDP averaged the gradients over processes
            dist.all_reduce(total)
            processes = dist.get_world_size()
        self._window_tokens = 0.0
        if total > 0:
            scale = processes / total.item()
            for group in self.optimizer.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        p.grad.mul_(scale)
        self.step(**(step_kwargs or {}))
        self.zero_grad(**(zero_kwargs or {}))

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
        write_bytes(filepath, obj)

    def put_text(self, obj: str, filepath, encoding: str = "utf-8") -> None:
        self.put(obj.encode(encoding), filepath)


def register() -> None:
    """Make :class:`AtomicLocalBackend` mmengine's file backend ``"atomic_local"`` (idempotent).
    :class:`CrashSafeCheckpointHook` and the engine's jobs call it; a runner of your own whose plain
    ``CheckpointHook`` names that backend needs this call first."""
    register_backend("atomic_local", AtomicLocalBackend, force=True)


@HOOKS.register_module()
class CrashSafeCheckpointHook(CheckpointHook):
    """mmengine's CheckpointHook in an order that a kill at any moment survives: the new checkpoint
    is written (atomically, to a temporary name then renamed, with ``backend="atomic_local"``), then
    ``last_checkpoint`` is pointed at it (also atomically), and only then are checkpoints beyond
    ``max_keep_ckpts`` removed. mmengine removes the oldest first and rewrites ``last_checkpoint`` in
    place, so a kill while saving can leave no checkpoint at all (``max_keep_ckpts=1``) or a pointer
    to a deleted or half-written file. Temporary files of an interrupted save are removed when a run
    starts. Same arguments as mmengine's hook."""

    def __init__(self, *args, **kwargs):
        register()  # the "atomic_local" backend its configs name
        super().__init__(*args, **kwargs)

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if self.max_keep_ckpts > 0:  # without mmengine's maxlen: the ids it would drop are the files to remove
            self.keep_ckpt_ids = collections.deque(self.keep_ckpt_ids)
        if is_main_process() and os.path.isdir(self.out_dir):
            for stale in Path(self.out_dir).glob(".*.tmp"):  # from a killed save: a file, or DeepSpeed's folder
                shutil.rmtree(stale) if stale.is_dir() else stale.unlink(missing_ok=True)

    def _save_checkpoint_with_step(self, runner, step, meta):
        stale = []
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            self.keep_ckpt_ids.append(step)
            while len(self.keep_ckpt_ids) > self.max_keep_ckpts:
                stale.append(self.keep_ckpt_ids.popleft())
            runner.message_hub.update_info("keep_ckpt_ids", list(self.keep_ckpt_ids))
        self.last_ckpt = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(step))
        runner.message_hub.update_info("last_ckpt", self.last_ckpt)
        runner.save_checkpoint(self.out_dir, self.filename_tmpl.format(step), self.file_client_args,
                               save_optimizer=self.save_optimizer, save_param_scheduler=self.save_param_scheduler,
                               meta=meta, by_epoch=self.by_epoch, backend_args=self.backend_args, **self.args)
        if not is_main_process():  # sharded (DeepSpeed) saves run on every rank; the rest is rank 0's
            return
        AtomicLocalBackend().put_text(self.last_ckpt, os.path.join(runner.work_dir, "last_checkpoint"))
        for old in stale:
            path = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(old))
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)
            elif self.file_backend.isdir(path):  # DeepSpeed writes a folder per checkpoint
                self.file_backend.rmtree(path)


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
