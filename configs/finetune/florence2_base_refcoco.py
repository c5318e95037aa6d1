"""Fine-tune Florence-2-base on RefCOCO: referring expression boxes
(``<OPEN_VOCABULARY_DETECTION>``, Acc@0.5) and segmentation
(``<REFERRING_EXPRESSION_SEGMENTATION>``, mIoU), both from the same refs.

Data: data/refcoco/ with refs(unc).p and instances.json (the refer toolkit's layout) and COCO
train2014 images in data/coco/train2014/. For RefCOCO+/RefCOCOg change ``refs``.
Expected: RefCOCO val Acc@0.5 92.6 (Florence-2-base generalist fine-tuned, spec); RES mIoU 34.6
zero-shot (no fine-tuned number published).
Time: ~20k iterations of batch 8 at 768 px (hours on 8 GPUs).
Command: bash tools/dist_train.sh configs/finetune/florence2_base_refcoco.py 8 --cfg-options model.pretrained=PATH
"""
from mmengine.config import read_base

from florence.data import RefCoco

with read_base():
    from .._base_.finetune import *  # noqa: F401,F403

data_root = "data/refcoco/"
refs = data_root + "refs(unc).p"
instances = data_root + "instances.json"
img_dir = "data/coco/train2014"
tasks = ["<OPEN_VOCABULARY_DETECTION>", "<REFERRING_EXPRESSION_SEGMENTATION>"]
train_dataloader.dataset.datasets = [  # noqa: F405
    dict(type=RefCoco, refs_file=refs, instances_file=instances, img_dir=img_dir, split="train", tasks=tasks,
         on_bad_record="skip")]
val_dataloader.dataset.datasets = [  # noqa: F405
    dict(type=RefCoco, refs_file=refs, instances_file=instances, img_dir=img_dir, split="val", tasks=tasks)]
test_dataloader = val_dataloader  # noqa: F405
