"""Mask R-CNN 3x with multi-scale training on COCO with the DaViT of Florence-2-large (mmdet).

Trains: the base 3x recipe with Florence-2-large's tower and gradient checkpointing.
Data: data/coco/annotations/instances_{train,val}2017.json, data/coco/{train,val}2017/*.jpg.
Expected: no published number (the paper reports DaViT-B 1x only: box AP 53.6, mask AP 46.4).
Time: not measured; about 3x the large 1x config's.
Command:
    bash tools/dist_train.sh configs/downstream/florence2-large_mask-rcnn_fpn_8xb2-ms-3x_coco.py 8 \
        --cfg-options model.backbone.init_cfg.checkpoint=/ckpt/Florence-2-large
"""
from mmengine.config import read_base

with read_base():
    from ._base_.coco_instance import *  # noqa: F401,F403
    from ._base_.mask_rcnn_davit_fpn import *  # noqa: F401,F403
    from ._base_.mmdet_runtime import *  # noqa: F401,F403
    from ._base_.schedule_mask_rcnn_1x import *  # noqa: F401,F403
    from ._base_.mask_rcnn_ms_3x import *  # noqa: F401,F403

train_dataloader.dataset.pipeline = ms_train_pipeline  # noqa: F405
model.backbone.arch = "large"  # noqa: F405
model.backbone.with_cp = True  # noqa: F405
model.backbone.init_cfg.checkpoint = "microsoft/Florence-2-large"  # noqa: F405
model.neck.in_channels = [256, 512, 1024, 2048]  # noqa: F405
