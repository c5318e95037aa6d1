"""UperNet, 160k iterations, on ADE20K at 512x512 with the DaViT-B of Florence-2-base (mmseg).

Trains: UperNet + auxiliary FCN head, DaViT-B initialised from Florence-2-base's vision tower;
160k iterations of batch 16 (8 GPUs x 2) on 512x512 crops, AdamW lr 6e-5 with layer-wise lr decay 0.9.
Data: data/ade/ADEChallengeData2016/images/{training,validation}/*.jpg,
      data/ade/ADEChallengeData2016/annotations/{training,validation}/*.png.
Expected: ADE20K val mIoU 54.9 single-scale (Florence-2 paper, DaViT-B, UperNet); 54.1 with the
first stage frozen (--cfg-options model.backbone.frozen_stages=1).
Time: not measured; roughly a day on 8 GPUs of the V100/A100 class. Not feasible on CPU.
Command:
    bash tools/dist_train.sh configs/downstream/florence2-base_upernet_8xb2-160k_ade20k-512x512.py 8 \
        --cfg-options model.backbone.init_cfg.checkpoint=/ckpt/Florence-2-base
"""
from mmengine.config import read_base

with read_base():
    from ._base_.ade20k_512 import *  # noqa: F401,F403
    from ._base_.mmseg_runtime import *  # noqa: F401,F403
    from ._base_.upernet_davit import *  # noqa: F401,F403
