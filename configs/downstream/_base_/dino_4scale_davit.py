"""DINO (4 scales, 900 queries) on the DaViT-B of Florence-2-base (mmdet), with mmdet's DINO-4scale
recipe: DETR-style multi-scale/crop augmentation (boxes only), AdamW lr 1e-4 (backbone x0.1),
gradient clipping 0.1, 12 epochs with one step at epoch 11, batch 16."""
from mmcv.transforms import LoadImageFromFile, RandomChoice, RandomChoiceResize
from mmdet.datasets.transforms import LoadAnnotations, PackDetInputs, RandomCrop, RandomFlip, Resize
from mmdet.models import DINO, ChannelMapper, DetDataPreprocessor, DINOHead, FocalLoss, GIoULoss, L1Loss
from mmdet.models.task_modules import BBoxL1Cost, FocalLossCost, HungarianAssigner, IoUCost
from mmengine.optim import MultiStepLR, OptimWrapper
from mmengine.runner import EpochBasedTrainLoop, TestLoop, ValLoop
from torch.optim import AdamW

from florence.downstream import Florence2DaViT

model = dict(
    type=DINO, num_queries=900, with_box_refine=True, as_two_stage=True,
    data_preprocessor=dict(type=DetDataPreprocessor, mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                           bgr_to_rgb=True, pad_size_divisor=1),
    backbone=dict(
        type=Florence2DaViT, arch="base", out_indices=(1, 2, 3), frozen_stages=-1,
        drop_path_rate=0.3,  # as Swin in mmdet's configs; the paper does not state it
        with_cp=False, init_cfg=dict(type="Pretrained", checkpoint="microsoft/Florence-2-base")),
    # 4 scales: strides 8, 16, 32 from the backbone, 64 from an extra conv
    neck=dict(type=ChannelMapper, in_channels=[256, 512, 1024], kernel_size=1, out_channels=256, act_cfg=None,
              norm_cfg=dict(type="GN", num_groups=32), num_outs=4),
    encoder=dict(num_layers=6, layer_cfg=dict(self_attn_cfg=dict(embed_dims=256, num_levels=4, dropout=0.0),
                                              ffn_cfg=dict(embed_dims=256, feedforward_channels=2048, ffn_drop=0.0))),
    decoder=dict(num_layers=6, return_intermediate=True,
                 layer_cfg=dict(self_attn_cfg=dict(embed_dims=256, num_heads=8, dropout=0.0),
                                cross_attn_cfg=dict(embed_dims=256, num_levels=4, dropout=0.0),
                                ffn_cfg=dict(embed_dims=256, feedforward_channels=2048, ffn_drop=0.0)),
                 post_norm_cfg=None),
    positional_encoding=dict(num_feats=128, normalize=True, offset=0.0, temperature=20),
    bbox_head=dict(type=DINOHead, num_classes=80, sync_cls_avg_factor=True,
                   loss_cls=dict(type=FocalLoss, use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
                   loss_bbox=dict(type=L1Loss, loss_weight=5.0), loss_iou=dict(type=GIoULoss, loss_weight=2.0)),
    dn_cfg=dict(label_noise_scale=0.5, box_noise_scale=1.0,
                group_cfg=dict(dynamic=True, num_groups=None, num_dn_queries=100)),
    train_cfg=dict(assigner=dict(type=HungarianAssigner, match_costs=[
        dict(type=FocalLossCost, weight=2.0), dict(type=BBoxL1Cost, weight=5.0, box_format="xywh"),
        dict(type=IoUCost, iou_mode="giou", weight=2.0)])),
    test_cfg=dict(max_per_img=300),
)

_scales = [(1333, s) for s in range(480, 801, 32)]
# DETR-style augmentation, boxes only (the leaf configs put these into coco_instance.py's loaders)
dino_train_pipeline = [
    dict(type=LoadImageFromFile),
    dict(type=LoadAnnotations, with_bbox=True),
    dict(type=RandomFlip, prob=0.5),
    dict(type=RandomChoice, transforms=[
        [dict(type=RandomChoiceResize, scales=_scales, keep_ratio=True)],
        # wide images keep a short side of 400-600 (long side up to 4200), as mmdet's DINO recipe
        [dict(type=RandomChoiceResize, scales=[(4200, 400), (4200, 500), (4200, 600)], keep_ratio=True),
         dict(type=RandomCrop, crop_type="absolute_range", crop_size=(384, 600), allow_negative_crop=True),
         dict(type=RandomChoiceResize, scales=_scales, keep_ratio=True)],
    ]),
    dict(type=PackDetInputs),
]
dino_test_pipeline = [
    dict(type=LoadImageFromFile),
    dict(type=Resize, scale=(1333, 800), keep_ratio=True),
    dict(type=LoadAnnotations, with_bbox=True),
    dict(type=PackDetInputs, meta_keys=("img_id", "img_path", "ori_shape", "img_shape", "scale_factor")),
]

max_epochs = 12
train_cfg = dict(type=EpochBasedTrainLoop, max_epochs=max_epochs, val_interval=1)
val_cfg = dict(type=ValLoop)
test_cfg = dict(type=TestLoop)
optim_wrapper = dict(
    type=OptimWrapper, optimizer=dict(type=AdamW, lr=1e-4, weight_decay=1e-4, fused=True), clip_grad=dict(max_norm=0.1, norm_type=2),
    paramwise_cfg=dict(custom_keys={"backbone": dict(lr_mult=0.1)}))  # DINO's recipe: the backbone at lr / 10
param_scheduler = [dict(type=MultiStepLR, begin=0, end=max_epochs, by_epoch=True, milestones=[11], gamma=0.1)]
