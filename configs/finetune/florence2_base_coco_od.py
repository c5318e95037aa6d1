"""Fine-tune Florence-2-base for COCO object detection (``<OD>``).

Data: COCO 2017 under data/coco/ (annotations/instances_{train,val}2017.json, train2017/, val2017/).
Expected: COCO val mAP 41.4 (Florence-2-base generalist fine-tuned, spec; 34.7 zero-shot).
Time: ~20k iterations of batch 8 at 768 px: days on a GPU-less machine, hours on 8 GPUs.
Command: bash tools/dist_train.sh configs/finetune/florence2_base_coco_od.py 8 --cfg-options model.pretrained=PATH
"""
from mmengine.config import read_base

from florence.data import CocoDetection

with read_base():
    from .._base_.finetune import *  # noqa: F401,F403

data_root = "data/coco/"
train_dataloader.dataset.datasets = [  # noqa: F405
    dict(type=CocoDetection, ann_file=data_root + "annotations/instances_train2017.json",
         img_dir=data_root + "train2017", tasks=["<OD>"], on_bad_record="skip")]
val_dataloader.dataset.datasets = [  # noqa: F405
    dict(type=CocoDetection, ann_file=data_root + "annotations/instances_val2017.json",
         img_dir=data_root + "val2017", tasks=["<OD>"])]
test_dataloader = val_dataloader  # noqa: F405
