"""Runtime defaults shared by florence's training configs: mmengine hooks, checkpoints that survive
a kill at any moment (written to a temporary file, then renamed; old ones removed only after the new
one is in place), load under torch's weights_only default and resume exactly (RNG state included),
a progress bar,
the metric table and drawings of a few predictions after each evaluation."""
from mmengine.hooks import DistSamplerSeedHook, IterTimerHook, LoggerHook, ParamSchedulerHook

from florence.engine import CrashSafeCheckpointHook, ResumableCheckpointHook
from florence.engine.hooks import EvaluationReportHook, ProgressBarHook

default_scope = "florence"
default_hooks = dict(
    timer=dict(type=IterTimerHook),
    logger=dict(type=LoggerHook, interval=100),
    param_scheduler=dict(type=ParamSchedulerHook),
    checkpoint=dict(type=CrashSafeCheckpointHook, interval=1000, by_epoch=False, max_keep_ckpts=2, save_last=True,
                    backend_args=dict(backend="atomic_local")),
    sampler_seed=dict(type=DistSamplerSeedHook),
)
custom_hooks = [dict(type=ResumableCheckpointHook), dict(type=ProgressBarHook), dict(type=EvaluationReportHook, num_drawings=15)]
env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
               dist_cfg=dict(backend="gloo"))
# distributed runs only; a scoped name, not the class: mmengine looks model wrappers up by name
model_wrapper_cfg = dict(type="florence.DataParallelAnyDevice")  # florence.engine.distributed: CPU (gloo) or GPU
log_processor = dict(by_epoch=False, window_size=20)
log_level = "INFO"
load_from = None
resume = False
randomness = dict(seed=0)
