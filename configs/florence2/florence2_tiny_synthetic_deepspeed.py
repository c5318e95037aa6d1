"""The main job (florence2_tiny_synthetic.py) trained with DeepSpeed ZeRO stage 2 through mmengine's
FlexibleRunner: optimizer states and gradients are partitioned across processes; bf16 (DeepSpeed's
bf16 mode) where the CPU or GPU computes it natively, float32 elsewhere.

Runs on CPU (gloo; DeepSpeed's CPU accelerator) and GPU. ``--cfg-options
strategy.zero_optimization.stage=3`` partitions the parameters too; ``strategy.bf16.enabled=True``
forces bf16. Checkpoints survive a kill at any moment and ``--resume`` continues exactly (tested).
Expected: what is identical and what is not. In float32, N processes of batch b give each step the
loss of one plain (non-DeepSpeed) process of batch N*b for the text loss (tested with ZeRO-3 within
1e-5 relative, tests/engine/test_distributed.py). Not identical: bf16 (what "auto" picks where bf16 is
native, logged) stays within bf16 rounding of the float32 run (0.1-2.5% per step, tested as shipped
with ZeRO-2); the training-only image losses (reconstruction, objects) are averaged per process and
weighted by each process's text-token count, so they differ slightly from the plain run's. A resumed
run equals the uninterrupted one bit for bit (tested after SIGKILL, config as shipped).
So ``train_dataloader.batch_size=8`` on 2 processes reproduces the main job's global batch.
Time: like the main job per process at the same per-process batch.
Command: bash tools/dist_train.sh configs/florence2/florence2_tiny_synthetic_deepspeed.py 2
"""
from mmengine.config import read_base
from torch.optim import AdamW

from florence.engine.deepspeed import DeepSpeedOptimWrapper, DeepSpeedStrategy

with read_base():
    from .florence2_tiny_synthetic import *  # noqa: F401,F403

strategy = dict(type=DeepSpeedStrategy, zero_optimization=dict(stage=2), gradient_clipping=1.0,
                bf16=dict(enabled="auto"),
                train_micro_batch_size_per_gpu=train_dataloader.batch_size)  # noqa: F405
optim_wrapper = dict(type=DeepSpeedOptimWrapper,
                     optimizer=dict(type=AdamW, lr=1e-3, betas=(0.9, 0.98), weight_decay=0.01),
                     paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0, bypass_duplicate=True))
