"""Runtime shared by the mmdet configs in configs/downstream/: mmdet's default hooks and visualizer,
plus florence's checkpoint handling: files written atomically (temporary file, then rename) whose
message hub is stored as tensors, so they load under torch's weights_only default (tools/test.py,
--resume, and init_cfg=dict(type="Pretrained", checkpoint=...) of a later run)."""
from mmdet.engine.hooks import DetVisualizationHook
from mmdet.visualization import DetLocalVisualizer
from mmengine.hooks import DistSamplerSeedHook, IterTimerHook, LoggerHook, ParamSchedulerHook
from mmengine.runner import LogProcessor
from mmengine.visualization import LocalVisBackend

from florence.engine import CrashSafeCheckpointHook, ResumableCheckpointHook

default_scope = "mmdet"
default_hooks = dict(
    timer=dict(type=IterTimerHook),
    logger=dict(type=LoggerHook, interval=50),
    param_scheduler=dict(type=ParamSchedulerHook),
    checkpoint=dict(type=CrashSafeCheckpointHook, interval=1, max_keep_ckpts=3,
                    backend_args=dict(backend="atomic_local")),
    sampler_seed=dict(type=DistSamplerSeedHook),
    visualization=dict(type=DetVisualizationHook),
)
custom_hooks = [dict(type=ResumableCheckpointHook)]
env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
               dist_cfg=dict(backend="nccl"))
visualizer = dict(type=DetLocalVisualizer, vis_backends=[dict(type=LocalVisBackend)])  # named after the run
log_processor = dict(type=LogProcessor, window_size=50, by_epoch=True)
log_level = "INFO"
load_from = None
resume = False
auto_scale_lr = dict(enable=False, base_batch_size=16)  # 8 GPUs x 2 images; --auto-scale-lr in mmdet's tools/train.py
