"""Runtime shared by the mmseg configs in configs/downstream/: mmseg's default hooks and visualizer,
plus florence's checkpoint handling (atomic files that load under torch's weights_only default)."""
from mmengine.hooks import DistSamplerSeedHook, IterTimerHook, LoggerHook, ParamSchedulerHook
from mmengine.runner import LogProcessor
from mmengine.visualization import LocalVisBackend
from mmseg.engine.hooks import SegVisualizationHook
from mmseg.visualization import SegLocalVisualizer

from florence.engine import CrashSafeCheckpointHook, ResumableCheckpointHook

default_scope = "mmseg"
default_hooks = dict(
    timer=dict(type=IterTimerHook),
    logger=dict(type=LoggerHook, interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type=ParamSchedulerHook),
    checkpoint=dict(type=CrashSafeCheckpointHook, by_epoch=False, interval=16000, max_keep_ckpts=3,
                    backend_args=dict(backend="atomic_local")),
    sampler_seed=dict(type=DistSamplerSeedHook),
    visualization=dict(type=SegVisualizationHook),
)
custom_hooks = [dict(type=ResumableCheckpointHook)]
env_cfg = dict(cudnn_benchmark=True, mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
               dist_cfg=dict(backend="nccl"))
visualizer = dict(type=SegLocalVisualizer, vis_backends=[dict(type=LocalVisBackend)])  # named after the run
log_processor = dict(type=LogProcessor, by_epoch=False)
log_level = "INFO"
load_from = None
resume = False
