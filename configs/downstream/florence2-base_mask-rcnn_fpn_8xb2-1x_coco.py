"""Mask R-CNN 1x on COCO with the DaViT-B of Florence-2-base (mmdet).

Trains: Mask R-CNN + FPN, DaViT-B initialised from Florence-2-base's vision tower, 12 epochs of
batch 16 (8 GPUs x 2) at 1333x800, AdamW lr 1e-4 with layer-wise lr decay 0.9.
Data: data/coco/annotations/instances_{train,val}2017.json, data/coco/{train,val}2017/*.jpg.
Expected: COCO val2017 box AP 53.6, mask AP 46.4 (Florence-2 paper, DaViT-B, Mask R-CNN 1x).
Not reproduced here (no GPU; the tests run this config at toy scale).
Time: not measured; roughly a day on 8 GPUs of the V100/A100 class. Not feasible on CPU.
Command (checkpoint: a local Florence-2-base folder in either published layout, or the hub id):
    bash tools/dist_train.sh configs/downstream/florence2-base_mask-rcnn_fpn_8xb2-1x_coco.py 8 \
        --cfg-options model.backbone.init_cfg.checkpoint=/ckpt/Florence-2-base
    .venv/bin/florence test configs/downstream/florence2-base_mask-rcnn_fpn_8xb2-1x_coco.py \
        work_dirs/florence2-base_mask-rcnn_fpn_8xb2-1x_coco/epoch_12.pth
"""
from mmengine.config import read_base

with read_base():
    from ._base_.coco_instance import *  # noqa: F401,F403
    from ._base_.mask_rcnn_davit_fpn import *  # noqa: F401,F403
    from ._base_.mmdet_runtime import *  # noqa: F401,F403
    from ._base_.schedule_mask_rcnn_1x import *  # noqa: F401,F403
