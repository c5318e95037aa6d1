"""Run by the distributed tests under torchrun: a few iterations of a small config (the main job's,
or its DeepSpeed variant with ``--zero STAGE``) through tools/train.py's runner choice; each rank
writes what it saw and a checksum of its final weights."""
import argparse
import json
import sys
from pathlib import Path

import torch.distributed as dist
from mmengine.hooks import Hook

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tests.engine.conftest import small_config  # noqa: E402

from florence.data import ImageTasks  # noqa: E402
from florence.engine import init_process_group  # noqa: E402

DEEPSPEED = ROOT / "configs" / "florence2" / "florence2_tiny_synthetic_deepspeed.py"


class RecordSamples(Hook):
    def __init__(self):
        self.seen = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        # one entry per dataset item (an ImageTasks holds one image's samples, all from that item)
        self.seen += [(s.samples[0] if isinstance(s, ImageTasks) else s).source for s in data_batch["data_samples"]]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("work_dir")
    parser.add_argument("--zero", type=int, help="DeepSpeed ZeRO stage (default: plain DDP)")
    args = parser.parse_args()
    cfg = small_config(args.work_dir, max_iters=4, image_size=64, batch_size=2,
                       path=DEEPSPEED if args.zero is not None else None)
    cfg.launcher = "pytorch"
    record = RecordSamples()
    if args.zero is not None:
        from mmengine.runner import FlexibleRunner

        cfg.strategy.zero_optimization.stage = args.zero
        cfg.strategy.train_micro_batch_size_per_gpu = 2
        runner = FlexibleRunner.from_cfg(cfg)
    else:
        from mmengine.runner import Runner

        init_process_group("pytorch")
        runner = Runner.from_cfg(cfg)
    runner.register_hook(record)
    runner.train()
    model = runner.model.module if hasattr(runner.model, "module") else runner.model
    checksum = sum(float(p.detach().double().sum()) for p in model.parameters())
    losses = runner.message_hub.get_scalar("train/loss").data[0]
    out = dict(rank=dist.get_rank(), world_size=dist.get_world_size(), seen=record.seen, checksum=checksum,
               wrapper=type(runner.model).__name__, losses=[float(v) for v in losses])
    if args.zero is not None:
        out["zero_stage"] = runner.model.model.zero_optimization_stage()
    Path(args.work_dir, f"rank{dist.get_rank()}.json").write_text(json.dumps(out))


if __name__ == "__main__":
    main()
