"""Run by test_distributed.py under torchrun: a few iterations of the small config with the pytorch
launcher; each rank writes what it saw and a checksum of its final weights."""
import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from mmengine.hooks import Hook
from mmengine.runner import Runner

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.engine.conftest import small_config  # noqa: E402

from florence.engine import init_process_group  # noqa: E402


class RecordSamples(Hook):
    def __init__(self):
        self.seen = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.seen += [s.source for s in data_batch["data_samples"]]


def main(work_dir):
    cfg = small_config(work_dir, max_iters=4, image_size=64, batch_size=2)
    cfg.launcher = "pytorch"
    init_process_group("pytorch")
    runner = Runner.from_cfg(cfg)
    record = RecordSamples()
    runner.register_hook(record)
    runner.train()
    model = runner.model.module
    checksum = sum(float(p.detach().double().sum()) for p in model.parameters())
    out = dict(rank=dist.get_rank(), world_size=dist.get_world_size(), seen=record.seen, checksum=checksum,
               wrapper=type(runner.model).__name__)
    Path(work_dir, f"rank{dist.get_rank()}.json").write_text(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
