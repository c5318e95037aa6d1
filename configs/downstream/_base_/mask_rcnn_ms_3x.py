"""Mask R-CNN 3x: 36 epochs with multi-scale training (short side 480-800, or a random crop
in between: the DETR / Swin augmentation of mmdet's ms-crop-3x configs), steps at epochs 27 and 33."""
from mmcv.transforms import LoadImageFromFile, RandomChoice, RandomChoiceResize
from mmdet.datasets.transforms import LoadAnnotations, PackDetInputs, RandomCrop, RandomFlip
from mmengine.optim import LinearLR, MultiStepLR
from mmengine.runner import EpochBasedTrainLoop

_scales = [(1333, s) for s in range(480, 801, 32)]  # (long, short) side limits
ms_train_pipeline = [
    dict(type=LoadImageFromFile),
    dict(type=LoadAnnotations, with_bbox=True, with_mask=True),
    dict(type=RandomFlip, prob=0.5),
    dict(type=RandomChoice, transforms=[
        [dict(type=RandomChoiceResize, scales=_scales, keep_ratio=True)],
        [dict(type=RandomChoiceResize, scales=[(1333, 400), (1333, 500), (1333, 600)], keep_ratio=True),
         dict(type=RandomCrop, crop_type="absolute_range", crop_size=(384, 600), allow_negative_crop=True),
         dict(type=RandomChoiceResize, scales=_scales, keep_ratio=True)],
    ]),
    dict(type=PackDetInputs),
]
max_epochs = 36
train_cfg = dict(type=EpochBasedTrainLoop, max_epochs=max_epochs, val_interval=1)
param_scheduler = [
    dict(type=LinearLR, start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type=MultiStepLR, begin=0, end=max_epochs, by_epoch=True, milestones=[27, 33], gamma=0.1),
]
