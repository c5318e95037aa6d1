"""UperNet (+ auxiliary FCN head on stage 3) on the DaViT-B of Florence-2-base (mmseg), its vision
tower initialised from the Florence-2 checkpoint; 160k iterations of batch 16, AdamW lr 6e-5 with
layer-wise lr decay, linear warm-up 1500 iterations then poly decay (Swin's mmseg recipe)."""
from mmengine.optim import LinearLR, OptimWrapper, PolyLR
from mmengine.runner import IterBasedTrainLoop, TestLoop, ValLoop
from mmseg.models import EncoderDecoder, SegDataPreProcessor
from mmseg.models.decode_heads import FCNHead, UPerHead
from mmseg.models.losses import CrossEntropyLoss
from torch.optim import AdamW

from florence.downstream import Florence2DaViT, LayerDecayOptimWrapperConstructor

norm_cfg = dict(type="SyncBN", requires_grad=True)  # the runner turns it into BatchNorm when not distributed
model = dict(
    type=EncoderDecoder,
    data_preprocessor=dict(type=SegDataPreProcessor, mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                           bgr_to_rgb=True, pad_val=0, seg_pad_val=255, size=(512, 512)),
    backbone=dict(
        type=Florence2DaViT, arch="base", out_indices=(0, 1, 2, 3),
        frozen_stages=-1,  # 1: the paper's frozen-stage ablation (mIoU 54.1 vs 54.9)
        drop_path_rate=0.3,  # as Swin-B in mmseg's configs; the paper does not state it
        with_cp=False, init_cfg=dict(type="Pretrained", checkpoint="microsoft/Florence-2-base")),
    decode_head=dict(type=UPerHead, in_channels=[128, 256, 512, 1024], in_index=[0, 1, 2, 3], pool_scales=(1, 2, 3, 6),
                     channels=512, dropout_ratio=0.1, num_classes=150, norm_cfg=norm_cfg, align_corners=False,
                     loss_decode=dict(type=CrossEntropyLoss, use_sigmoid=False, loss_weight=1.0)),
    auxiliary_head=dict(type=FCNHead, in_channels=512, in_index=2, channels=256, num_convs=1, concat_input=False,
                        dropout_ratio=0.1, num_classes=150, norm_cfg=norm_cfg, align_corners=False,
                        loss_decode=dict(type=CrossEntropyLoss, use_sigmoid=False, loss_weight=0.4)),
    train_cfg=dict(),
    test_cfg=dict(mode="whole"),
)

max_iters = 160000
train_cfg = dict(type=IterBasedTrainLoop, max_iters=max_iters, val_interval=16000)
val_cfg = dict(type=ValLoop)
test_cfg = dict(type=TestLoop)
optim_wrapper = dict(
    type=OptimWrapper, optimizer=dict(type=AdamW, lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01, fused=True),
    constructor=LayerDecayOptimWrapperConstructor,
    paramwise_cfg=dict(decay_rate=0.9))  # stem lr x 0.9^13 (rule: the constructor's docstring)
param_scheduler = [
    dict(type=LinearLR, start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type=PolyLR, eta_min=0.0, power=1.0, begin=1500, end=max_iters, by_epoch=False),
]
