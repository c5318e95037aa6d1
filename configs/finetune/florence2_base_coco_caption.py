"""Fine-tune Florence-2-base for COCO captioning (``<CAPTION>``), evaluated with CIDEr against all
references of each image.

Data: COCO 2017 captions under data/coco/ (annotations/captions_{train,val}2017.json, images).
Expected: COCO caption CIDEr 140.0 (Florence-2-base generalist fine-tuned, spec; 133.0 zero-shot).
Time: ~20k iterations of batch 8 at 768 px (hours on 8 GPUs).
Command: bash tools/dist_train.sh configs/finetune/florence2_base_coco_caption.py 8 --cfg-options model.pretrained=PATH
"""
from mmengine.config import read_base

from florence.data import CocoCaptions

with read_base():
    from .._base_.finetune import *  # noqa: F401,F403

data_root = "data/coco/"
train_dataloader.dataset.datasets = [  # noqa: F405
    dict(type=CocoCaptions, ann_file=data_root + "annotations/captions_train2017.json",
         img_dir=data_root + "train2017", on_bad_record="skip")]
val_dataloader.dataset.datasets = [  # noqa: F405
    dict(type=CocoCaptions, ann_file=data_root + "annotations/captions_val2017.json",
         img_dir=data_root + "val2017", per_image=True)]
test_dataloader = val_dataloader  # noqa: F405
