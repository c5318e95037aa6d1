"""Fine-tune Florence-2-base to specialise in COCO detection while keeping its other tasks alive:
a task-balanced mixture where half the samples are ``<OD>`` and the rest are captions, referring
expressions, phrase grounding and region-to-category (each drawn by weight, whatever its size).

Data: the COCO, RefCOCO and Flickr30k layouts of the single-task configs in this folder.
Expected: COCO val mAP near the single-task fine-tune (41.4, spec) with the other tasks' scores
within a point or two of zero-shot (caption CIDEr 133.0, Flickr30k R@1 83.6).
Time: ~20k iterations of batch 8 at 768 px (hours on 8 GPUs).
Command: bash tools/dist_train.sh configs/finetune/florence2_base_multitask_od.py 8 --cfg-options model.pretrained=PATH
"""
from mmengine.config import read_base

from florence.data import CocoCaptions, CocoDetection, MultiTaskDataset, PhraseGrounding, RefCoco

with read_base():
    from .._base_.finetune import *  # noqa: F401,F403

coco = "data/coco/"
train_dataloader.dataset = dict(  # noqa: F405
    type=MultiTaskDataset, image_size=image_size, length=1_000_000, weights=[4, 1, 1, 1, 1],  # noqa: F405
    datasets=[
        dict(type=CocoDetection, ann_file=coco + "annotations/instances_train2017.json", img_dir=coco + "train2017",
             tasks=["<OD>"], on_bad_record="skip"),
        dict(type=CocoDetection, ann_file=coco + "annotations/instances_train2017.json", img_dir=coco + "train2017",
             tasks=["<REGION_TO_CATEGORY>"], on_bad_record="skip"),
        dict(type=CocoCaptions, ann_file=coco + "annotations/captions_train2017.json", img_dir=coco + "train2017",
             on_bad_record="skip"),
        dict(type=RefCoco, refs_file="data/refcoco/refs(unc).p", instances_file="data/refcoco/instances.json",
             img_dir=coco + "train2014", split="train", tasks=["<OPEN_VOCABULARY_DETECTION>"], on_bad_record="skip"),
        dict(type=PhraseGrounding, ann_file="data/flickr30k/train.jsonl", img_dir="data/flickr30k/images",
             on_bad_record="skip"),
    ])
val_dataloader.dataset.datasets = [  # noqa: F405
    dict(type=CocoDetection, ann_file=coco + "annotations/instances_val2017.json", img_dir=coco + "val2017",
         tasks=["<OD>"]),
    dict(type=CocoCaptions, ann_file=coco + "annotations/captions_val2017.json", img_dir=coco + "val2017",
         per_image=True),
    dict(type=PhraseGrounding, ann_file="data/flickr30k/val.jsonl", img_dir="data/flickr30k/images"),
]
test_dataloader = val_dataloader  # noqa: F405
