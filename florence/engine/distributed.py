"""Data-parallel training on CPU as well as GPU, through mmengine's Runner.

mmengine's ``pytorch`` launcher assumes GPUs twice: ``init_dist`` calls ``torch.cuda.set_device``
and the DDP wrapper is always given ``device_ids=[LOCAL_RANK]``, which torch refuses for a CPU
module. :func:`init_process_group` starts the process group itself when there is no GPU (the Runner
then uses it as is) and :class:`DataParallelAnyDevice` passes ``device_ids`` only for GPU modules.

    torchrun --nproc_per_node 2 tools/train.py CONFIG --launcher pytorch     # tools/dist_train.sh
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist
from mmengine.model import MMDistributedDataParallel

from ..registry import MODEL_WRAPPERS

__all__ = ["DataParallelAnyDevice", "init_process_group"]


@MODEL_WRAPPERS.register_module()
class DataParallelAnyDevice(MMDistributedDataParallel):
    """mmengine's DDP wrapper (same train/val/test steps) that also wraps CPU modules."""

    def __init__(self, module, device_ids=None, **kwargs):
        if next(module.parameters()).device.type == "cpu":
            device_ids = None
        super().__init__(module=module, device_ids=device_ids, **kwargs)


def init_process_group(launcher: str, backend: str = "gloo") -> None:
    """Start torch.distributed for ``launcher="pytorch"`` (torchrun's environment) when no GPU is
    available; with GPUs, mmengine's own initialisation runs instead."""
    if launcher == "none" or torch.cuda.is_available() or dist.is_initialized():
        return
    if launcher != "pytorch":
        raise ValueError(f"on CPU only the 'pytorch' launcher (torchrun) is supported, got {launcher!r}")
    missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise RuntimeError(f"--launcher pytorch needs torchrun's environment ({missing} unset): "
                           "run through torchrun or tools/dist_train.sh")
    dist.init_process_group(backend=backend)
