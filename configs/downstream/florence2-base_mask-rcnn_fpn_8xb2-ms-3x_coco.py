"""Mask R-CNN 3x with multi-scale training on COCO with the DaViT-B of Florence-2-base (mmdet).

Trains: as the 1x config, for 36 epochs (steps at 27 and 33) with multi-scale / random-crop
training (short side 480-800).
Data: data/coco/annotations/instances_{train,val}2017.json, data/coco/{train,val}2017/*.jpg.
Expected: no published number (the paper reports the 1x schedule: box AP 53.6, mask AP 46.4).
For comparison, the same change of schedule takes mmdet's Swin-T Mask R-CNN from 42.7 / 39.3
(1x) to 46.0 / 41.6 (ms-crop-3x), mmdet's model zoo.
Time: not measured; about 3x the 1x config's.
Command:
    bash tools/dist_train.sh configs/downstream/florence2-base_mask-rcnn_fpn_8xb2-ms-3x_coco.py 8 \
        --cfg-options model.backbone.init_cfg.checkpoint=/ckpt/Florence-2-base
"""
from mmengine.config import read_base

with read_base():
    from ._base_.coco_instance import *  # noqa: F401,F403
    from ._base_.mask_rcnn_davit_fpn import *  # noqa: F401,F403
    from ._base_.mmdet_runtime import *  # noqa: F401,F403
    from ._base_.schedule_mask_rcnn_1x import *  # noqa: F401,F403
    from ._base_.mask_rcnn_ms_3x import *  # noqa: F401,F403

train_dataloader.dataset.pipeline = ms_train_pipeline  # noqa: F405
