"""Train (and evaluate) a Florence-2 model from a config: a thin wrapper over mmengine's Runner.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp] [--cfg-options k=v ...]
    torchrun --nproc_per_node N tools/train.py CONFIG --launcher pytorch     # data-parallel, CPU or GPU

Configs with a ``strategy`` (DeepSpeed ZeRO, see ``florence.engine.deepspeed``) run on mmengine's
FlexibleRunner. ``--resume`` without a path continues from the work dir's latest checkpoint (iteration,
optimizer, scheduler, data order and RNG state); ``--amp`` turns on bf16 autocast where the GPU or
CPU computes bf16 natively (float32 elsewhere, logged; ``optim_wrapper.dtype=bfloat16`` forces it).
Run as a script it sets glibc's malloc to keep freed memory (``florence.engine.keep_freed_memory``;
its effect is measured in the README's "Performance" section; ``FLORENCE_KEEP_FREED_MEMORY=0`` turns
that off).
"""
import argparse
import os
import os.path as osp

from mmengine.config import Config, DictAction

# (importing florence.engine registers florence's runner pieces)
from florence.engine import explain_missing_extras, init_process_group, keep_freed_memory, load_config
from mmengine.runner import Runner  # after florence: it quiets DeepSpeed's unused-accelerator warning


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("--work-dir", help="where logs and checkpoints go (default: work_dirs/<config name>)")
    parser.add_argument("--resume", nargs="?", const="auto", default=None,
                        help="resume from CKPT, or from the latest checkpoint of the work dir")
    parser.add_argument("--amp", action="store_true",
                        help="bf16 mixed precision (autocast) where the device computes bf16 natively")
    parser.add_argument("--launcher", choices=["none", "pytorch"], default="none",
                        help="'pytorch' for torchrun / tools/dist_train.sh (DDP; gloo on CPU)")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, default={},
                        help="override config values, e.g. train_cfg.max_iters=100")
    return parser.parse_args(argv)


def build_config(args) -> Config:
    cfg = load_config(args.config, args.cfg_options)  # data_root=DIR moves the config's dataset paths too
    cfg.work_dir = args.work_dir or cfg.get("work_dir") or osp.join("work_dirs", osp.splitext(osp.basename(args.config))[0])
    if args.amp:
        cfg.optim_wrapper.type = "florence.AutocastOptimWrapper"  # scoped: found from mmdet/mmseg configs too
        cfg.optim_wrapper.setdefault("dtype", "auto")  # bf16 where native, else float32 (logged)
    cfg.launcher = args.launcher
    if args.resume == "auto":
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    return cfg


def main(argv=None):
    args = parse_args(argv)
    with explain_missing_extras(args.config):  # e.g. a downstream config without mmdet: the install command
        cfg = build_config(args)
        if "strategy" in cfg:  # DeepSpeed: its strategy starts the process group (CPU or GPU)
            from mmengine.runner import FlexibleRunner

            runner = FlexibleRunner.from_cfg(cfg)
        else:
            init_process_group(args.launcher, cfg.get("env_cfg", {}).get("dist_cfg", {}).get("backend", "gloo"))
            runner = Runner.from_cfg(cfg)
        runner.train()
    return runner


if __name__ == "__main__":
    if os.environ.get("FLORENCE_KEEP_FREED_MEMORY", "1") != "0":
        keep_freed_memory()  # training steps reuse their memory instead of faulting it in again
    main()
