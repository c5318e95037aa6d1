"""DINO 4-scale, 12 epochs, on COCO with the DaViT of Florence-2-large (mmdet).

Trains: the base DINO recipe with Florence-2-large's tower (stages 2-4: 512, 1024, 2048 channels)
and gradient checkpointing.
Data: data/coco/annotations/instances_{train,val}2017.json, data/coco/{train,val}2017/*.jpg.
Expected: no published number (the paper reports DaViT-B only: box AP 59.2).
Time: not measured; a few times the base config's.
Command:
    bash tools/dist_train.sh configs/downstream/florence2-large_dino-4scale_8xb2-12e_coco.py 8 \
        --cfg-options model.backbone.init_cfg.checkpoint=/ckpt/Florence-2-large
"""
from mmengine.config import read_base

with read_base():
    from ._base_.coco_instance import *  # noqa: F401,F403
    from ._base_.dino_4scale_davit import *  # noqa: F401,F403
    from ._base_.mmdet_runtime import *  # noqa: F401,F403

train_dataloader.dataset.pipeline = dino_train_pipeline  # noqa: F405
train_dataloader.dataset.filter_cfg.filter_empty_gt = False  # noqa: F405  (DETRs learn from empty images too)
val_dataloader.dataset.pipeline = test_dataloader.dataset.pipeline = dino_test_pipeline  # noqa: F405
val_evaluator.metric = test_evaluator.metric = "bbox"  # noqa: F405

model.backbone.arch = "large"  # noqa: F405
model.backbone.with_cp = True  # noqa: F405
model.backbone.init_cfg.checkpoint = "microsoft/Florence-2-large"  # noqa: F405
model.neck.in_channels = [512, 1024, 2048]  # noqa: F405
