"""Mask R-CNN 1x: 12 epochs at batch 16, AdamW with layer-wise lr decay, steps at epochs 8 and 11."""
from mmengine.optim import LinearLR, MultiStepLR, OptimWrapper
from mmengine.runner import EpochBasedTrainLoop, TestLoop, ValLoop
from torch.optim import AdamW

from florence.downstream import LayerDecayOptimWrapperConstructor

max_epochs = 12
train_cfg = dict(type=EpochBasedTrainLoop, max_epochs=max_epochs, val_interval=1)
val_cfg = dict(type=ValLoop)
test_cfg = dict(type=TestLoop)
optim_wrapper = dict(
    type=OptimWrapper,
    optimizer=dict(type=AdamW, lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05, fused=True),  # Swin's mmdet recipe
    constructor=LayerDecayOptimWrapperConstructor,
    # stem lr x 0.9^13 = 0.25, last DaViT unit x 0.9 (rule: LayerDecayOptimWrapperConstructor's docstring)
    paramwise_cfg=dict(decay_rate=0.9))
param_scheduler = [
    dict(type=LinearLR, start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type=MultiStepLR, begin=0, end=max_epochs, by_epoch=True, milestones=[8, 11], gamma=0.1),
]
