"""Hooks for people watching a run: a progress bar, and after each evaluation the metric table
(printed and written as JSON) with drawings of a few predictions."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from PIL import Image

from ..processing.image import IMAGENET_MEAN, IMAGENET_STD
from ..registry import HOOKS
from ..visualize import draw_result

__all__ = ["ProgressBarHook", "EvaluationReportHook"]


@HOOKS.register_module()
class ProgressBarHook(Hook):
    """A tqdm bar over training iterations (with the loss) and over evaluation batches (on the
    main process only in distributed runs)."""

    priority = "VERY_LOW"

    def __init__(self, disable: bool | None = None):
        self.disable = disable
        self._bar = None

    def before_run(self, runner):
        if not is_main_process():
            self.disable = True

    def _open(self, total, initial=0, desc=""):
        from tqdm import tqdm

        self._close()
        self._bar = tqdm(total=total, initial=initial, desc=desc, unit="it", dynamic_ncols=True, disable=self.disable)

    def _close(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def before_train(self, runner):
        self._open(runner.max_iters, runner.iter, "train")

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if self._bar is None:
            return
        self._bar.update(1)
        if outputs and "loss" in outputs:
            loss = outputs["loss"]
            self._bar.set_postfix(loss=f"{float(getattr(loss, 'detach', lambda: loss)()):.3f}", refresh=False)

    def after_train(self, runner):
        self._close()

    def before_val_epoch(self, runner):
        self._paused = self._bar
        self._bar = None
        self._eval_bar(runner.val_loop.dataloader, "evaluate")

    def _eval_bar(self, dataloader, desc):
        from tqdm import tqdm

        self._ebar = tqdm(total=len(dataloader), desc=desc, unit="batch", dynamic_ncols=True, disable=self.disable,
                          leave=False)

    def after_val_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self._ebar.update(1)

    def after_val_epoch(self, runner, metrics=None):
        self._ebar.close()
        self._bar = getattr(self, "_paused", None)

    def before_test_epoch(self, runner):
        self._eval_bar(runner.test_loop.dataloader, "test")

    def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self._ebar.update(1)

    def after_test_epoch(self, runner, metrics=None):
        self._ebar.close()


def _to_image(pixels, size) -> Image.Image:
    x = pixels.float().cpu().numpy().transpose(1, 2, 0) * np.asarray(IMAGENET_STD) + np.asarray(IMAGENET_MEAN)
    return Image.fromarray((x.clip(0, 1) * 255).round().astype(np.uint8)).resize(tuple(size))


@HOOKS.register_module()
class EvaluationReportHook(Hook):
    """After each evaluation: print the (task, metric, value, samples, invalid) table, write it to
    ``<work_dir>/eval_<iter>.json`` (and ``eval_last.json``), and draw the first ``num_drawings``
    predictions to ``<work_dir>/predictions/`` (main process only)."""

    priority = "LOW"

    def __init__(self, num_drawings: int = 8):
        self.num_drawings = num_drawings

    def _reset(self):
        self._drawn = 0

    before_val_epoch = before_test_epoch = lambda self, runner: self._reset()

    def _draw(self, runner, data_batch, outputs):
        if not is_main_process() or data_batch is None:  # None: the Ray test loop keeps the pixels it draws only
            return
        out_dir = Path(runner.work_dir) / "predictions"
        for pixels, sample in zip(data_batch["inputs"], outputs):
            if self._drawn >= self.num_drawings:
                return
            out_dir.mkdir(parents=True, exist_ok=True)
            image = draw_result(_to_image(pixels, sample.image_size), {sample.task: sample.pred})
            image.save(out_dir / f"{self._drawn:02d}_{sample.task.strip('<>').lower()}.png")
            self._drawn += 1

    def after_val_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self._draw(runner, data_batch, outputs)

    def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self._draw(runner, data_batch, outputs)

    def _report(self, runner, evaluator):
        from ..evaluation.task_metric import format_table

        rows = [row for m in evaluator.metrics for row in getattr(m, "table", [])]
        if not rows:
            return
        runner.logger.info("evaluation (iteration %d):\n%s", runner.iter, format_table(rows))
        for name in (f"eval_{runner.iter}.json", "eval_last.json"):
            with open(os.path.join(runner.work_dir, name), "w") as f:
                json.dump(rows, f, indent=1)

    def after_val_epoch(self, runner, metrics=None):
        self._report(runner, runner.val_evaluator)

    def after_test_epoch(self, runner, metrics=None):
        self._report(runner, runner.test_evaluator)
