"""Training and evaluation on mmengine: the jobs (:func:`train`, :func:`evaluate`,
:func:`export_checkpoint`), the model wrapper and the runner pieces."""
from .model import Florence2DataPreprocessor, Florence2Model, build_tokenizer_from_cfg
from .distributed import DataParallelAnyDevice, init_process_group
from .hooks import EvaluationReportHook, ProgressBarHook
from .jobs import evaluate, explain_missing_extras, export_checkpoint, load_config, train, trained_image_size
from .loops import TrainLoop
from .runtime import (AtomicLocalBackend, AutocastOptimWrapper, CrashSafeCheckpointHook, ResumableCheckpointHook,
                      keep_freed_memory, register)

__all__ = ["train", "evaluate", "export_checkpoint", "load_config", "trained_image_size", "explain_missing_extras",
           "Florence2Model", "Florence2DataPreprocessor", "build_tokenizer_from_cfg", "AutocastOptimWrapper",
           "AtomicLocalBackend", "CrashSafeCheckpointHook", "ResumableCheckpointHook", "ProgressBarHook",
           "EvaluationReportHook", "TrainLoop", "DataParallelAnyDevice", "init_process_group", "keep_freed_memory",
           "register"]
