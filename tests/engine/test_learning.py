"""The model visibly learns: a few hundred steps drive the loss well below its start, put a
location task's held-out result clearly above chance, and teach the model to read the image
(captions of held-out scenes are far likelier with their own image than with another scene's)."""
import numpy as np
import pytest
import torch
from mmengine.runner import Runner

import florence.engine  # noqa: F401
from florence.evaluation import METRIC_FUNCTIONS

from .conftest import small_config

ITERS = 400


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    cfg = small_config(tmp_path_factory.mktemp("learn"), max_iters=ITERS, tasks=["<REGION_TO_SEGMENTATION>"],
                       image_size=64, batch_size=32, val_length=32)
    cfg.default_hooks.logger.interval = 10
    cfg.model.generation = dict(num_beams=1, max_new_tokens=40)
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner


def test_loss_falls_well_below_its_start(trained):
    losses = trained.message_hub.get_scalar("train/loss").data[0]
    start, end = float(np.mean(losses[:10])), float(np.mean(losses[-20:]))
    assert end < 0.7 * start, (start, end)  # measured: 7.78 -> 4.08


def test_location_task_clearly_above_chance(trained):
    """The polygon of the shape in a given box: the box's coordinates must be read from the prompt
    and combined (a circle's points are cx + r cos t, a triangle's apex the midpoint), the shape
    from the image. Measured: mIoU 0.54 after 400 steps (0.00 before the coordinate location init
    and the 1/sqrt(d) weight init)."""
    trained.val()
    rows = {r["metric"]: r for m in trained.val_evaluator.metrics for r in m.table}
    learned = rows["mIoU"]["value"]
    # chance: the same fixed polygon (the middle of the image) for every sample
    dataset = trained.val_dataloader.dataset.datasets[0]
    samples = [dict(task="<REGION_TO_SEGMENTATION>", image_size=(64, 64), text_input=None, gt=dataset[i]["annotation"],
                    pred={"polygons": [[[16, 16, 48, 16, 48, 48, 16, 48]]], "labels": [""]}) for i in range(32)]
    chance = METRIC_FUNCTIONS["refseg_miou"](samples)["mIoU"]
    assert learned > chance + 0.15 and learned > 0.3, (learned, chance)


def test_the_model_reads_the_image():
    """Caption-only training from scratch with the main config's recipe: the held-out caption loss
    must depend on the image. Without the pixel reconstruction loss it does not (measured: equal to
    3 decimals with the images swapped, after 600 steps at 192 px); with it, here (96 px, 300 steps):
    0.38 with each scene's own image, 1.16 with another scene's."""
    import tempfile

    with tempfile.TemporaryDirectory() as work:
        cfg = small_config(work, max_iters=300, tasks=["<CAPTION>"], image_size=96, batch_size=32, val_length=64)
        cfg.default_hooks.logger.interval = 50
        runner = Runner.from_cfg(cfg)
        runner.train()
    model = runner.model.eval()
    batch = model.data_preprocessor(next(iter(runner.val_dataloader)), training=True)
    batch.pop("data_samples")
    with torch.no_grad():
        own = model.model(**batch).loss.item()
        batch["pixel_values"] = batch["pixel_values"].roll(1, dims=0)  # every caption with another scene
        other = model.model(**batch).loss.item()
    assert other > own + 0.2, (own, other)
