"""The main job (florence2_tiny_synthetic.py) trained with DeepSpeed ZeRO stage 2 through mmengine's
FlexibleRunner: optimizer states and gradients are partitioned across processes.

Runs on CPU (gloo; DeepSpeed's CPU accelerator) and GPU. ``--cfg-options
strategy.zero_optimization.stage=3`` partitions the parameters too.
Expected: the main job's table (same data and schedule); ZeRO changes memory, not results.
Time: like the main job per process; with N processes each sees 16 scenes x 2 tasks (N x the data per step).
Command: bash tools/dist_train.sh configs/florence2/florence2_tiny_synthetic_deepspeed.py 2
"""
from mmengine.config import read_base
from torch.optim import AdamW

from florence.engine.deepspeed import DeepSpeedOptimWrapper, DeepSpeedStrategy

with read_base():
    from .florence2_tiny_synthetic import *  # noqa: F401,F403

strategy = dict(type=DeepSpeedStrategy, zero_optimization=dict(stage=2), gradient_clipping=1.0,
                train_micro_batch_size_per_gpu=train_dataloader.batch_size)  # noqa: F405
optim_wrapper = dict(type=DeepSpeedOptimWrapper,
                     optimizer=dict(type=AdamW, lr=1e-3, betas=(0.9, 0.98), weight_decay=0.01),
                     paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0, bypass_duplicate=True))
# DeepSpeed writes its own checkpoint folders (one per save, every rank): plain mmengine saving
default_hooks.checkpoint.pop("backend_args")  # noqa: F405
custom_hooks = [h for h in custom_hooks if h["type"].__name__ != "ResumableCheckpointHook"]  # noqa: F405
