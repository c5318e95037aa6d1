"""DeepSpeed ZeRO through mmengine's FlexibleRunner, on CPU as well as GPU.

mmengine 0.10.7's ``DeepSpeedStrategy`` does not run with current DeepSpeed or without a GPU:
it imports ``deepspeed.runtime.fp16.onebit`` (removed from DeepSpeed) to register optimizers, and
initialises the process group through ``torch.cuda.set_device``. :class:`DeepSpeedStrategy` here is
mmengine's with those two fixed: it registers the DeepSpeed optimizers that exist, and without a
GPU it starts the gloo process group itself (a one-process group for a run without a launcher).
DeepSpeed picks its CPU accelerator by itself when no GPU is present.

    strategy = dict(type=DeepSpeedStrategy, zero_optimization=dict(stage=2), gradient_clipping=1.0)
    optim_wrapper = dict(type=DeepSpeedOptimWrapper, optimizer=dict(type=AdamW, lr=1e-4))
    # tools/train.py runs configs with a ``strategy`` on mmengine's FlexibleRunner

Importing this module needs ``deepspeed`` (``pip install -e .[deepspeed]``).
"""
from __future__ import annotations

import os
import socket

import deepspeed
import torch
import torch.distributed as dist
from deepspeed.accelerator import get_accelerator
from mmengine._strategy import deepspeed as _mmengine_deepspeed
from mmengine._strategy.deepspeed import DeepSpeedOptimWrapper
from mmengine.logging import print_log
from mmengine.registry import OPTIMIZERS, STRATEGIES

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


# the strategy's __init__ calls this module-level function: replace it with the working one
_mmengine_deepspeed.register_deepspeed_optimizers = _register_available_optimizers


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@STRATEGIES.register_module(name="florence.DeepSpeedStrategy")
class DeepSpeedStrategy(_mmengine_deepspeed.DeepSpeedStrategy):
    """mmengine's DeepSpeedStrategy that also runs without a GPU (gloo) and without a launcher."""

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
