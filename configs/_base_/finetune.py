"""Fine-tuning a pretrained Florence-2 (base or large, either published layout): the shared part.

Starts from ``pretrained`` (a local folder or a hub id; override with
``--cfg-options model.pretrained=/path/to/Florence-2-base``), 768 px inputs, AdamW at lr 1e-5 with
500 warm-up iterations and cosine decay to zero (far below pre-training's 1e-4: the model already
knows the tasks), bf16 autocast where native (float32 elsewhere: ``dtype="auto"``), gradient
clipping at 1.0, no weight decay on norms and biases.
Memory levers, all in the model dict: ``freeze=("vision_tower",)``, ``gradient_checkpointing=True``,
``lora=dict(r=8, lora_alpha=16, target_modules=[...])``. Multi-process: ``tools/dist_train.sh``.
Evaluation uses the published generation settings (3 beams), with location n-grams allowed.
"""
from mmengine.config import read_base
from mmengine.dataset import DefaultSampler, InfiniteSampler
from mmengine.optim import CosineAnnealingLR, LinearLR
from torch.optim import AdamW

from florence.data import MultiTaskDataset
from florence.engine import AutocastOptimWrapper, Florence2Model, TrainLoop
from florence.evaluation.task_metric import TaskMetric

with read_base():
    from .default_runtime import *  # noqa: F401,F403
    from .schedules.adamw_cosine import *  # noqa: F401,F403

image_size = 768
max_iters = 20_000
warmup_iters = 500

model = dict(type=Florence2Model, pretrained="microsoft/Florence-2-base",
             generation=dict(num_beams=3, max_new_tokens=1024), max_target_tokens=1024)

optim_wrapper = dict(type=AutocastOptimWrapper, dtype="auto",
                     optimizer=dict(type=AdamW, lr=1e-5, betas=(0.9, 0.999), weight_decay=0.01, fused=True),
                     paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0, bypass_duplicate=True),
                     clip_grad=dict(max_norm=1.0), accumulative_counts=1)
param_scheduler = [
    dict(type=LinearLR, start_factor=1e-3, by_epoch=False, begin=0, end=warmup_iters),
    dict(type=CosineAnnealingLR, by_epoch=False, begin=warmup_iters, end=max_iters, T_max=max_iters - warmup_iters,
         eta_min=0.0),
]
train_cfg = dict(type=TrainLoop, max_iters=max_iters, val_interval=5_000)

train_dataloader = dict(batch_size=8, num_workers=4, persistent_workers=True,
                        sampler=dict(type=InfiniteSampler, shuffle=True),
                        dataset=dict(type=MultiTaskDataset, image_size=image_size, datasets=[]))
val_dataloader = dict(batch_size=8, num_workers=4, persistent_workers=True,
                      sampler=dict(type=DefaultSampler, shuffle=False),
                      dataset=dict(type=MultiTaskDataset, image_size=image_size, datasets=[]))
test_dataloader = val_dataloader
val_evaluator = dict(type=TaskMetric)
test_evaluator = val_evaluator
