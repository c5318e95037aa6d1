"""The model visibly learns: a few hundred steps on one location task drive the loss well below its
start and the held-out result clearly above chance."""
import numpy as np
from mmengine.runner import Runner

import florence.engine  # noqa: F401
from florence.evaluation import METRIC_FUNCTIONS


def test_a_few_hundred_steps_learn_region_to_segmentation(make_config, tmp_path):
    cfg = make_config(max_iters=600, tasks=["<REGION_TO_SEGMENTATION>"], image_size=64, batch_size=32,
                      val_length=32)
    cfg.default_hooks.logger.interval = 10
    cfg.model.generation = dict(num_beams=1, max_new_tokens=40)
    runner = Runner.from_cfg(cfg)
    runner.train()
    losses = runner.message_hub.get_scalar("train/loss").data[0]
    start, end = float(np.mean(losses[:10])), float(np.mean(losses[-20:]))
    print("loss", start, end)
    assert end < 0.5 * start, (start, end)

    metrics = runner.val()
    rows = {r["metric"]: r for m in runner.val_evaluator.metrics for r in m.table}
    learned = rows["mIoU"]["value"]
    # chance: the same fixed polygon (the middle of the image) for every sample
    samples = [dict(task="<REGION_TO_SEGMENTATION>", image_size=(64, 64), text_input=None, gt=s["annotation"],
                    pred={"polygons": [[[16, 16, 48, 16, 48, 48, 16, 48]]], "labels": [""]})
               for s in (runner.val_dataloader.dataset.datasets[0][i] for i in range(32))]
    chance = METRIC_FUNCTIONS["refseg_miou"](samples)["mIoU"]
    assert learned > chance + 0.15 and learned > 0.3, (learned, chance, metrics)
