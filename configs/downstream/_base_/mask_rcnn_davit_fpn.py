"""Mask R-CNN with FPN on the DaViT-B of Florence-2-base (mmdet), its vision tower initialised from
the Florence-2 checkpoint (either published layout; set model.backbone.init_cfg.checkpoint to a
local folder on a machine without hub access). The rest is mmdet's Mask R-CNN R50-FPN model."""
from mmcv.ops import RoIAlign
from mmdet.models import (FPN, CrossEntropyLoss, DetDataPreprocessor, FCNMaskHead, L1Loss, MaskRCNN, RPNHead,
                          Shared2FCBBoxHead, SingleRoIExtractor, StandardRoIHead)
from mmdet.models.task_modules import AnchorGenerator, DeltaXYWHBBoxCoder, MaxIoUAssigner, RandomSampler

from florence.downstream import Florence2DaViT

model = dict(
    type=MaskRCNN,
    # Florence-2's normalisation (ImageNet mean/std of RGB in 0..1) in mmdet's 0..255 units
    data_preprocessor=dict(type=DetDataPreprocessor, mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                           bgr_to_rgb=True, pad_mask=True, pad_size_divisor=32),
    backbone=dict(
        type=Florence2DaViT, arch="base", out_indices=(0, 1, 2, 3), frozen_stages=-1,
        drop_path_rate=0.3,  # as Swin-B in mmdet's configs; the paper does not state it
        with_cp=False,  # True: gradient checkpointing, for 16 GB GPUs
        init_cfg=dict(type="Pretrained", checkpoint="microsoft/Florence-2-base")),
    neck=dict(type=FPN, in_channels=[128, 256, 512, 1024], out_channels=256, num_outs=5),
    rpn_head=dict(
        type=RPNHead, in_channels=256, feat_channels=256,
        anchor_generator=dict(type=AnchorGenerator, scales=[8], ratios=[0.5, 1.0, 2.0], strides=[4, 8, 16, 32, 64]),
        bbox_coder=dict(type=DeltaXYWHBBoxCoder, target_means=[0.0] * 4, target_stds=[1.0] * 4),
        loss_cls=dict(type=CrossEntropyLoss, use_sigmoid=True, loss_weight=1.0),
        loss_bbox=dict(type=L1Loss, loss_weight=1.0)),
    roi_head=dict(
        type=StandardRoIHead,
        bbox_roi_extractor=dict(type=SingleRoIExtractor, roi_layer=dict(type=RoIAlign, output_size=7, sampling_ratio=0),
                                out_channels=256, featmap_strides=[4, 8, 16, 32]),
        bbox_head=dict(
            type=Shared2FCBBoxHead, in_channels=256, fc_out_channels=1024, roi_feat_size=7, num_classes=80,
            bbox_coder=dict(type=DeltaXYWHBBoxCoder, target_means=[0.0] * 4, target_stds=[0.1, 0.1, 0.2, 0.2]),
            reg_class_agnostic=False,
            loss_cls=dict(type=CrossEntropyLoss, use_sigmoid=False, loss_weight=1.0),
            loss_bbox=dict(type=L1Loss, loss_weight=1.0)),
        mask_roi_extractor=dict(type=SingleRoIExtractor, roi_layer=dict(type=RoIAlign, output_size=14, sampling_ratio=0),
                                out_channels=256, featmap_strides=[4, 8, 16, 32]),
        mask_head=dict(type=FCNMaskHead, num_convs=4, in_channels=256, conv_out_channels=256, num_classes=80,
                       loss_mask=dict(type=CrossEntropyLoss, use_mask=True, loss_weight=1.0))),
    train_cfg=dict(
        rpn=dict(
            assigner=dict(type=MaxIoUAssigner, pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3,
                          match_low_quality=True, ignore_iof_thr=-1),
            sampler=dict(type=RandomSampler, num=256, pos_fraction=0.5, neg_pos_ub=-1, add_gt_as_proposals=False),
            allowed_border=-1, pos_weight=-1, debug=False),
        rpn_proposal=dict(nms_pre=2000, max_per_img=1000, nms=dict(type="nms", iou_threshold=0.7), min_bbox_size=0),
        rcnn=dict(
            assigner=dict(type=MaxIoUAssigner, pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0.5,
                          match_low_quality=True, ignore_iof_thr=-1),
            sampler=dict(type=RandomSampler, num=512, pos_fraction=0.25, neg_pos_ub=-1, add_gt_as_proposals=True),
            mask_size=28, pos_weight=-1, debug=False)),
    test_cfg=dict(
        rpn=dict(nms_pre=1000, max_per_img=1000, nms=dict(type="nms", iou_threshold=0.7), min_bbox_size=0),
        rcnn=dict(score_thr=0.05, nms=dict(type="nms", iou_threshold=0.5), max_per_img=100, mask_thr_binary=0.5)),
)
