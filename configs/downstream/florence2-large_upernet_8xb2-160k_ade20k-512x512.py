"""UperNet, 160k iterations, on ADE20K at 512x512 with the DaViT of Florence-2-large (mmseg).

Trains: the base UperNet recipe with Florence-2-large's tower (256-2048 channels) and gradient
checkpointing.
Data: data/ade/ADEChallengeData2016/images/{training,validation}/*.jpg,
      data/ade/ADEChallengeData2016/annotations/{training,validation}/*.png.
Expected: no published number (the paper reports DaViT-B only: mIoU 54.9).
Time: not measured; a few times the base config's.
Command:
    bash tools/dist_train.sh configs/downstream/florence2-large_upernet_8xb2-160k_ade20k-512x512.py 8 \
        --cfg-options model.backbone.init_cfg.checkpoint=/ckpt/Florence-2-large
"""
from mmengine.config import read_base

with read_base():
    from ._base_.ade20k_512 import *  # noqa: F401,F403
    from ._base_.mmseg_runtime import *  # noqa: F401,F403
    from ._base_.upernet_davit import *  # noqa: F401,F403

model.backbone.arch = "large"  # noqa: F405
model.backbone.with_cp = True  # noqa: F405
model.backbone.init_cfg.checkpoint = "microsoft/Florence-2-large"  # noqa: F405
model.decode_head.in_channels = [256, 512, 1024, 2048]  # noqa: F405
model.auxiliary_head.in_channels = 1024  # noqa: F405
