"""DeepSpeed ZeRO through mmengine's FlexibleRunner, on CPU as well as GPU.

mmengine 0.10.7's ``DeepSpeedStrategy`` does not run with current DeepSpeed or without a GPU, and
its checkpoints do not survive a kill. :class:`DeepSpeedStrategy` here is mmengine's with these fixed:

- it registers the DeepSpeed optimizers that exist (mmengine imports the removed
  ``deepspeed.runtime.fp16.onebit``): mmengine's registration function is replaced for the duration
  of the strategy's ``__init__`` only, never at import;
- without a GPU it starts the gloo process group itself (mmengine calls ``torch.cuda.set_device``),
  also for a one-process run without a launcher; DeepSpeed picks its CPU accelerator by itself;
- a checkpoint (DeepSpeed writes a folder of shards, one or more per process) is written under a
  temporary name and renamed once every process has written its shards, so a kill while saving
  leaves the previous checkpoint and never a half-written one under a checkpoint's name;
- the runner's checkpoint hooks run on save and resume (mmengine skips them), so
  :class:`~florence.engine.ResumableCheckpointHook` stores the message hub as plain tensors and the
  RNG state;
- ``bf16=dict(enabled="auto")``: DeepSpeed's bf16 mode where the device computes bf16 natively,
  float32 elsewhere (logged); ``enabled=True`` forces it (on CPUs without native bf16 it runs
  through slower fallbacks).

:class:`DeepSpeedOptimWrapper` weights the loss per target token across processes (as
:class:`~florence.engine.AutocastOptimWrapper` does without DeepSpeed): each process's loss is scaled
by its share of the step's tokens, so N processes of batch b update as one process of batch N*b.
With DeepSpeed's ``gradient_accumulation_steps`` > 1, each micro-batch is weighted across processes
but the micro-batches of a window count equally (DeepSpeed divides by their number).

    strategy = dict(type=DeepSpeedStrategy, zero_optimization=dict(stage=2), bf16=dict(enabled="auto"))
    optim_wrapper = dict(type=DeepSpeedOptimWrapper, optimizer=dict(type=AdamW, lr=1e-4))
    # tools/train.py runs configs with a ``strategy`` on mmengine's FlexibleRunner

Importing this module needs ``deepspeed`` (``pip install -e .[deepspeed]``).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import socket

import deepspeed
import torch
import torch.distributed as dist
from deepspeed.accelerator import get_accelerator
from mmengine._strategy import deepspeed as _mmengine_deepspeed
from mmengine.logging import print_log
from mmengine.registry import OPTIMIZERS, STRATEGIES

from .. import hardware
from ..registry import OPTIM_WRAPPERS

__all__ = ["DeepSpeedStrategy", "DeepSpeedOptimWrapper"]


def _register_available_optimizers() -> list[str]:
    """mmengine's optimizer registration without the removed one-bit optimizers."""
    from deepspeed.ops.adam import DeepSpeedCPUAdam, FusedAdam
    from deepspeed.ops.lamb import FusedLamb

    names = []
    for cls in (DeepSpeedCPUAdam, FusedAdam, FusedLamb):
        if cls.__name__ not in OPTIMIZERS.module_dict:
            OPTIMIZERS.register_module(module=cls)
        names.append(cls.__name__)
    return names


@contextlib.contextmanager
def _registering_available_optimizers():
    """While mmengine's strategy ``__init__`` runs (it ends by calling its module's
    ``register_deepspeed_optimizers``), that name is :func:`_register_available_optimizers`; mmengine's
    module is left as it was afterwards."""
    original = _mmengine_deepspeed.register_deepspeed_optimizers
    _mmengine_deepspeed.register_deepspeed_optimizers = _register_available_optimizers
    try:
        yield
    finally:
        _mmengine_deepspeed.register_deepspeed_optimizers = original


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _barrier():
    if dist.is_initialized():
        dist.barrier()


def _is_main() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


@STRATEGIES.register_module(name="florence.DeepSpeedStrategy")
class DeepSpeedStrategy(_mmengine_deepspeed.DeepSpeedStrategy):
    """mmengine's DeepSpeedStrategy that also runs without a GPU (gloo) and without a launcher, with
    crash-safe checkpoints, checkpoint hooks, and ``bf16=dict(enabled="auto")``."""

    def __init__(self, *, bf16: dict | None = None, **kwargs):
        if bf16 is not None and bf16.get("enabled") == "auto":
            device = hardware.default_device()
            native = hardware.native_bf16(device)
            print_log(f"DeepSpeed bf16 {'on' if native else 'off (float32)'}: bf16 is "
                      f"{'' if native else 'not '}native on {device.type}", logger="current")
            bf16 = dict(bf16, enabled=native)
        with _registering_available_optimizers():
            super().__init__(bf16=bf16, **kwargs)

    def _setup_distributed(self, launcher=None, backend: str = "nccl", **kwargs):
        if torch.cuda.is_available():
            return super()._setup_distributed(launcher, backend, **kwargs)
        print_log(f"DeepSpeed {deepspeed.__version__} on CPU (accelerator {get_accelerator().device_name()}, gloo)",
                  logger="current")
        deepspeed.init_distributed(dist_backend="gloo", **kwargs)  # torchrun's environment

    def _wrap_model(self, model):
        if not dist.is_initialized():  # one process, no launcher: DeepSpeed still needs a group
            os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
            os.environ.setdefault("MASTER_PORT", str(_free_port()))
            os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1")
            deepspeed.init_distributed(dist_backend="gloo" if not torch.cuda.is_available() else "nccl")
        return super()._wrap_model(model)

    def save_checkpoint(self, filename: str, *, callback=None, extra_ckpt: dict | None = None, **kwargs) -> None:
        """DeepSpeed's save into ``.<name>.tmp`` beside ``filename``, renamed to ``filename`` once
        every process has written its shards (DeepSpeed ends its save with a barrier)."""
        extra_ckpt = {} if extra_ckpt is None else extra_ckpt
        if callback is not None:  # the runner's before_save_checkpoint hooks
            callback(extra_ckpt)
        folder, name = os.path.split(filename)
        tmp, old = os.path.join(folder, f".{name}.tmp"), os.path.join(folder, f".{name}.old.tmp")
        if _is_main():
            shutil.rmtree(tmp, ignore_errors=True)  # from a save that was killed
        _barrier()
        super().save_checkpoint(tmp, extra_ckpt=extra_ckpt, **kwargs)
        if _is_main():
            if os.path.exists(filename):  # the same iteration saved again (after a resume)
                os.replace(filename, old)
            os.replace(tmp, filename)
            shutil.rmtree(old, ignore_errors=True)
        _barrier()

    def resume(self, filename: str, *, callback=None, **kwargs) -> dict:
        checkpoint = super().resume(filename, **kwargs)
        if callback is not None:  # the runner's after_load_checkpoint hooks
            callback(checkpoint)
        return checkpoint


@OPTIM_WRAPPERS.register_module()
class DeepSpeedOptimWrapper(_mmengine_deepspeed.DeepSpeedOptimWrapper):
    """mmengine's DeepSpeed optimizer wrapper with the loss weighted per target token across
    processes (when the loss says how many tokens it averages: ``loss.num_tokens``, set by
    :class:`~florence.engine.Florence2Model`). DeepSpeed averages the processes' gradients; scaling
    process r's mean loss by ``N * n_r / sum(n)`` makes that average the mean over all the step's
    tokens."""

    def update_params(self, loss) -> None:
        tokens = getattr(loss, "num_tokens", None)
        if tokens is not None and dist.is_initialized() and dist.get_world_size() > 1:
            total = torch.tensor(float(tokens), dtype=torch.float64, device=loss.device)
            dist.all_reduce(total)
            if total > 0:
                loss = loss * (dist.get_world_size() * tokens / total.item())
        super().update_params(loss)
