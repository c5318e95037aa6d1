"""A small fast variant of the main job's config for engine tests."""
from pathlib import Path

import pytest
from mmengine.config import Config

ROOT = Path(__file__).resolve().parents[2]
MAIN = ROOT / "configs" / "florence2" / "florence2_tiny_synthetic.py"


def small_config(work_dir, max_iters=6, tasks=None, image_size=96, batch_size=4, val_length=8, path=None,
                 **overrides) -> Config:
    """The main config (or ``path``, a variant of it) at toy scale: tiny images, few samples, no
    progress bars."""
    cfg = Config.fromfile(str(path or MAIN))
    cfg.work_dir = str(work_dir)
    cfg.train_cfg.max_iters, cfg.train_cfg.val_interval = max_iters, 10 ** 6
    warmup = max(2, max_iters // 10)  # LinearLR reaches the peak at its end: >= 2 iterations
    cfg.param_scheduler[0].end = warmup
    cfg.param_scheduler[1].update(begin=warmup, end=max_iters, T_max=max_iters - warmup)
    for loader, length, seed in ((cfg.train_dataloader, 10 ** 5, 0), (cfg.val_dataloader, val_length, 12345)):
        loader.batch_size = batch_size
        loader.dataset.image_size = image_size
        src = loader.dataset.datasets[0]
        src.update(image_size=image_size, length=length, seed=seed)
        if tasks is not None:  # one task per scene, as the tests that pick tasks were calibrated
            src.tasks = tasks
            src.pop("tasks_per_image", None)
    cfg.test_dataloader = cfg.val_dataloader
    cfg.model.generation = dict(num_beams=1, max_new_tokens=24)
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint.interval = max(1, max_iters // 2)
    for hook in cfg.custom_hooks:
        if getattr(hook["type"], "__name__", hook["type"]) == "ProgressBarHook":
            hook["disable"] = True
    cfg.merge_from_dict(overrides)
    return cfg


@pytest.fixture
def make_config(tmp_path):
    def make(work_dir=None, **kw):
        return small_config(work_dir or tmp_path / "work", **kw)
    return make
