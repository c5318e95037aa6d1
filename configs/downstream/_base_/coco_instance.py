"""COCO 2017 instance segmentation for mmdet (boxes and masks), single-scale 1333x800 training.

Data: data/coco/annotations/instances_{train,val}2017.json, data/coco/{train,val}2017/*.jpg.
Batch 2 per GPU (8 GPUs: 16, the recipe's batch)."""
from mmcv.transforms import LoadImageFromFile
from mmdet.datasets import AspectRatioBatchSampler, CocoDataset
from mmdet.datasets.transforms import LoadAnnotations, PackDetInputs, RandomFlip, Resize
from mmdet.evaluation import CocoMetric
from mmengine.dataset import DefaultSampler

data_root = "data/coco/"
train_pipeline = [
    dict(type=LoadImageFromFile),
    dict(type=LoadAnnotations, with_bbox=True, with_mask=True),
    dict(type=Resize, scale=(1333, 800), keep_ratio=True),
    dict(type=RandomFlip, prob=0.5),
    dict(type=PackDetInputs),
]
test_pipeline = [
    dict(type=LoadImageFromFile),
    dict(type=Resize, scale=(1333, 800), keep_ratio=True),
    dict(type=LoadAnnotations, with_bbox=True, with_mask=True),
    dict(type=PackDetInputs, meta_keys=("img_id", "img_path", "ori_shape", "img_shape", "scale_factor")),
]
train_dataloader = dict(
    batch_size=2, num_workers=2, persistent_workers=True,
    sampler=dict(type=DefaultSampler, shuffle=True), batch_sampler=dict(type=AspectRatioBatchSampler),
    dataset=dict(type=CocoDataset, data_root=data_root, ann_file="annotations/instances_train2017.json",
                 data_prefix=dict(img="train2017/"), filter_cfg=dict(filter_empty_gt=True, min_size=32),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=2, persistent_workers=True, drop_last=False,
    sampler=dict(type=DefaultSampler, shuffle=False),
    dataset=dict(type=CocoDataset, data_root=data_root, ann_file="annotations/instances_val2017.json",
                 data_prefix=dict(img="val2017/"), test_mode=True, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type=CocoMetric, ann_file=data_root + "annotations/instances_val2017.json", metric=["bbox", "segm"],
                     format_only=False)
test_evaluator = val_evaluator
