"""Evaluate a checkpoint on a config's test set: prints the (task, metric, value, samples,
invalid) table and writes it as JSON.

    python tools/test.py CONFIG CHECKPOINT [--out metrics.json] [--work-dir DIR] [--cfg-options k=v ...]
"""
import argparse
import json
import os.path as osp

from mmengine.config import DictAction

# (importing florence.engine registers its runner pieces)
from florence.engine import explain_missing_extras, load_config
from mmengine.runner import Runner  # after florence: it quiets DeepSpeed's unused-accelerator warning



def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("checkpoint")
    parser.add_argument("--out", help="write the metric table here as JSON")
    parser.add_argument("--work-dir")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, default={})
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    with explain_missing_extras(args.config):  # e.g. a downstream config without mmdet: the install command
        cfg = load_config(args.config, args.cfg_options)  # data_root=DIR moves the config's dataset paths too
        cfg.work_dir = args.work_dir or cfg.get("work_dir") or osp.join("work_dirs",
                                                                       osp.splitext(osp.basename(args.config))[0])
        cfg.load_from, cfg.resume = args.checkpoint, False
        runner = Runner.from_cfg(cfg)
        metrics = runner.test()
    rows = [row for m in runner.test_evaluator.metrics for row in getattr(m, "table", [])]
    if args.out:
        with open(args.out, "w") as f:
            # numpy scalars (mmseg's metrics) as plain numbers
            json.dump({"metrics": metrics, "table": rows}, f, indent=1, default=lambda x: x.item())
    return rows


if __name__ == "__main__":
    main()
