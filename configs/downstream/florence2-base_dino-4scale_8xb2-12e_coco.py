"""DINO 4-scale, 12 epochs, on COCO with the DaViT-B of Florence-2-base (mmdet).

Trains: DINO (900 queries, 6+6 layers, 4 feature scales from DaViT stages 2-4 + one extra conv),
DaViT-B initialised from Florence-2-base's vision tower; 12 epochs of batch 16 (8 GPUs x 2), DETR-style
multi-scale / crop augmentation, AdamW lr 1e-4 (backbone 1e-5), one step at epoch 11.
Data: data/coco/annotations/instances_{train,val}2017.json, data/coco/{train,val}2017/*.jpg.
Expected: COCO val2017 box AP 59.2 (Florence-2 paper, DaViT-B, DINO).
Time: not measured; roughly a day on 8 GPUs of the V100/A100 class. Not feasible on CPU.
Command:
    bash tools/dist_train.sh configs/downstream/florence2-base_dino-4scale_8xb2-12e_coco.py 8 \
        --cfg-options model.backbone.init_cfg.checkpoint=/ckpt/Florence-2-base
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
