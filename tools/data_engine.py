"""The data engine, config-driven: label images with models, merge and filter the labels, then rounds
of training a model on the labels and labelling again (``florence.label.rounds``); every annotator
measured on held-out images with ground truth, before filtering and after each filter.

    python tools/data_engine.py CONFIG [--work-dir DIR] [--cfg-options k=v ...]

Writes ``round_R/labels`` (label shards + manifest.json), ``round_R/train`` and ``round_R/model`` (the
model trained on round R-1's labels), ``truth/`` (the same training on the truth, with
``truth_baseline``), and ``report.json`` / ``report.md``. Started again after a kill it continues where
it stopped.
"""
import argparse
import os.path as osp

from florence.engine import load_config
from florence.label.rounds import run_data_engine
from mmengine.config import DictAction


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("--work-dir", help="default: work_dirs/<config name>")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, default={})
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    work_dir = args.work_dir or cfg.get("work_dir") or osp.join("work_dirs", osp.splitext(osp.basename(args.config))[0])
    report = run_data_engine(cfg, work_dir)
    print(open(osp.join(work_dir, "report.md")).read(), end="")
    return report


if __name__ == "__main__":
    main()
