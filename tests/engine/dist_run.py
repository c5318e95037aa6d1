"""Run by the distributed tests under torchrun: a few iterations of a small config (the main job's,
or its DeepSpeed variant with ``--zero STAGE``; with ``--shards DIR`` streamed from tar shards) through tools/train.py's runner choice; each rank
writes what it saw (samples, per-iteration loss and target tokens), a checksum of its final weights
and, with ``--weights``, rank 0 its full final weights.

With FLORENCE_TEST_SAVE_PAUSE=s every checkpoint file DeepSpeed writes prints ``SAVING <path>`` and
waits s seconds after it is written: the kill test sends SIGKILL inside a save."""
import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
from mmengine.hooks import Hook

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tests.engine.conftest import small_config  # noqa: E402

from florence.data import ImageTasks  # noqa: E402
from florence.engine import init_process_group  # noqa: E402

DEEPSPEED = ROOT / "configs" / "florence2" / "florence2_tiny_synthetic_deepspeed.py"


def unwrap(model):
    """The Florence2Model inside DDP's or DeepSpeed's wrappers."""
    while hasattr(model, "module"):
        model = model.module
    return model


class Record(Hook):
    """The samples each iteration trained on, and the target tokens of its loss."""

    def __init__(self):
        self.seen, self.tokens = [], []

    def before_train(self, runner):
        model = unwrap(runner.model)
        parse = model.parse_losses

        def recording(losses):
            self.tokens.append(int(losses["num_tokens"]))
            return parse(losses)

        model.parse_losses = recording

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        # one entry per dataset item (an ImageTasks holds one image's samples, all from that item)
        self.seen += [(s.samples[0] if isinstance(s, ImageTasks) else s).source for s in data_batch["data_samples"]]


def announce_deepspeed_saves(pause: float):
    from deepspeed.runtime.checkpoint_engine.torch_checkpoint_engine import TorchCheckpointEngine

    save = TorchCheckpointEngine.save

    def announced(self, state_dict, path):
        save(self, state_dict, path)
        print("SAVING", path, flush=True)
        time.sleep(pause)

    TorchCheckpointEngine.save = announced


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("work_dir")
    parser.add_argument("--zero", type=int, help="DeepSpeed ZeRO stage (default: plain DDP)")
    parser.add_argument("--bf16", action="store_true", help="DeepSpeed's bf16 mode (default: float32)")
    parser.add_argument("--shipped-precision", action="store_true",
                        help="DeepSpeed's bf16 setting as the config ships it (enabled='auto')")
    parser.add_argument("--text-only", action="store_true", help="without the training-only image losses")
    parser.add_argument("--iters", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--interval", type=int, help="checkpoint interval (default: half the iterations)")
    parser.add_argument("--evaluate", action="store_true", help="run the evaluation loop at the end")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--weights", action="store_true",
                        help="rank 0 saves its final weights (with ZeRO-3 gathered from every rank)")
    parser.add_argument("--shards", help="train on this shard folder, streamed (MultiTaskStream)")
    parser.add_argument("--workers", type=int, default=0, help="dataloader workers")
    parser.add_argument("--image-size", type=int, default=64)
    args = parser.parse_args()
    cfg = small_config(args.work_dir, max_iters=args.iters, image_size=args.image_size, batch_size=args.batch_size,
                       val_length=4, path=DEEPSPEED if args.zero is not None else None)
    cfg.train_dataloader.num_workers = args.workers
    if args.shards:
        cfg.train_dataloader.update(sampler=None, dataset=dict(
            type="MultiTaskStream", image_size=args.image_size,
            datasets=[dict(type="ShardedDataset", path=args.shards, buffer_size=100)]))
    cfg.launcher = "pytorch"
    cfg.resume = args.resume
    if args.interval:
        cfg.default_hooks.checkpoint.interval = args.interval
    cfg.model.init_seed = 0  # the same initial weights as the plain run's, whichever runner builds it
    if args.text_only:
        cfg.model.update(reconstruction=None, objects=None)
    if args.evaluate:
        cfg.train_cfg.val_interval = args.iters
    record = Record()
    if args.zero is not None:
        from mmengine.runner import FlexibleRunner

        if float(os.environ.get("FLORENCE_TEST_SAVE_PAUSE", "0")):
            announce_deepspeed_saves(float(os.environ["FLORENCE_TEST_SAVE_PAUSE"]))
        cfg.strategy.zero_optimization.stage = args.zero
        cfg.strategy.train_micro_batch_size_per_gpu = args.batch_size
        if not args.shipped_precision:
            cfg.strategy.bf16 = dict(enabled=args.bf16)
        runner = FlexibleRunner.from_cfg(cfg)
    else:
        from mmengine.runner import Runner

        cfg.optim_wrapper.dtype = "float32"  # as the plain reference run: no bf16 autocast where it is native
        init_process_group("pytorch")
        runner = Runner.from_cfg(cfg)
    runner.register_hook(record)
    runner.train()
    model = unwrap(runner.model)
    checksum = sum(float(p.detach().double().sum()) for p in model.parameters())
    losses = runner.message_hub.get_scalar("train/loss").data[0]
    out = dict(rank=dist.get_rank(), world_size=dist.get_world_size(), seen=record.seen, checksum=checksum,
               wrapper=type(runner.model).__name__, losses=[float(v) for v in losses], tokens=record.tokens,
               dtype=str(next(model.parameters()).dtype))
    if args.zero is not None:
        out["zero_stage"] = runner.model.model.zero_optimization_stage()
    if args.weights:
        gathered = contextlib.nullcontext()
        if args.zero == 3:  # each rank holds a slice of every parameter: gather them whole
            import deepspeed

            gathered = deepspeed.zero.GatheredParameters(list(model.parameters()))
        with gathered:
            if dist.get_rank() == 0:
                torch.save({k: v.detach().clone() for k, v in model.state_dict().items()},
                           Path(args.work_dir, "weights.pt"))
    Path(args.work_dir, f"rank{dist.get_rank()}.json").write_text(json.dumps(out))
    # an orderly end of the process group: once (07f3820's CI run) a ZeRO-3 rank aborted at interpreter exit
    # ("terminate called without an active exception") after writing all of the above, as if a communication
    # thread were still alive while the interpreter tore down
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
