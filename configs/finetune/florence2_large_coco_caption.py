"""Florence-2-large variant of florence2_base_coco_caption.py: same data and schedule, the large checkpoint,
batch 4 with 2-step gradient accumulation (the same effective batch of 8 in less memory).

Expected: the -large number of the same published result (spec; see the base config's header).
Command: bash tools/dist_train.sh configs/finetune/florence2_large_coco_caption.py 8 --cfg-options model.pretrained=PATH
"""
from mmengine.config import read_base

with read_base():
    from .florence2_base_coco_caption import *  # noqa: F401,F403

model.update(pretrained="microsoft/Florence-2-large")  # noqa: F405
train_dataloader.update(batch_size=4)  # noqa: F405
optim_wrapper.update(accumulative_counts=2)  # noqa: F405
