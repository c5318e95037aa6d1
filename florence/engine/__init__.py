"""Training and evaluation on mmengine: the model wrapper and the runner pieces."""
from .model import Florence2DataPreprocessor, Florence2Model, build_tokenizer_from_cfg
from .distributed import DataParallelAnyDevice, init_process_group
from .hooks import EvaluationReportHook, ProgressBarHook
from .loops import TrainLoop
from .runtime import (AtomicLocalBackend, AutocastOptimWrapper, CrashSafeCheckpointHook, ResumableCheckpointHook,
                      explain_missing_extras, keep_freed_memory, load_config, trained_image_size, export_checkpoint)

__all__ = ["Florence2Model", "Florence2DataPreprocessor", "build_tokenizer_from_cfg", "AutocastOptimWrapper",
           "AtomicLocalBackend", "CrashSafeCheckpointHook", "ResumableCheckpointHook", "ProgressBarHook",
           "EvaluationReportHook", "TrainLoop", "DataParallelAnyDevice", "init_process_group", "keep_freed_memory",
           "explain_missing_extras", "load_config", "trained_image_size",
           "export_checkpoint"]
