"""Soak: does a long training run's memory plateau? 20,000 tiny steps of the main job's model at 64 px,
resident memory (RSS) recorded every 500 steps.

    python benchmarks/soak_memory.py [--steps 20000] [--every 500] [--plot docs/soak_memory.png]

What runs is tools/train.py's path (glibc keeping freed memory, ``florence.engine.keep_freed_memory``,
unless ``--malloc-defaults``) on the main config with 64 px scenes, 4 scenes x 2 tasks per step,
checkpoints every 1000 steps and no evaluation. Prints the RSS table and the growth over the second
half of the run, writes the figures as JSON beside the plot (PNG, matplotlib). Verdict: "plateau" when
the RSS at the end is within 5% (and 50 MB) of the RSS at the half-way point.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAIN = ROOT / "configs" / "florence2" / "florence2_tiny_synthetic.py"


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--every", type=int, default=500)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--plot", default=str(ROOT / "docs" / "soak_memory.png"))
    parser.add_argument("--malloc-defaults", action="store_true", help="leave glibc's malloc settings alone")
    args = parser.parse_args()

    from mmengine.config import Config
    from mmengine.hooks import Hook

    from florence.engine import keep_freed_memory
    from mmengine.runner import Runner

    kept = False if args.malloc_defaults else keep_freed_memory()
    cfg = Config.fromfile(str(MAIN))
    work = tempfile.mkdtemp(prefix="florence_soak_")
    cfg.work_dir = work
    cfg.train_cfg.update(max_iters=args.steps, val_interval=10 ** 9)
    cfg.param_scheduler[1].update(end=args.steps, T_max=args.steps - cfg.param_scheduler[0].end)
    cfg.train_dataloader.batch_size = 4
    cfg.train_dataloader.dataset.image_size = args.image_size
    cfg.train_dataloader.dataset.datasets[0].image_size = args.image_size
    cfg.val_dataloader = cfg.test_dataloader = cfg.val_evaluator = cfg.test_evaluator = None
    cfg.val_cfg = cfg.test_cfg = None
    cfg.default_hooks.logger.interval = args.every
    cfg.default_hooks.checkpoint.interval = 1000
    cfg.custom_hooks = [h for h in cfg.custom_hooks if h["type"].__name__ == "ResumableCheckpointHook"]

    records = []

    class RecordMemory(Hook):
        def before_train(self, runner):
            self.t0 = time.perf_counter()
            records.append((0, rss_mb(), 0.0))

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            if (runner.iter + 1) % args.every == 0:
                records.append((runner.iter + 1, rss_mb(), time.perf_counter() - self.t0))
                print(f"step {records[-1][0]:6d}  RSS {records[-1][1]:7.1f} MB  {records[-1][2]:7.0f} s", flush=True)

    runner = Runner.from_cfg(cfg)
    runner.register_hook(RecordMemory(), priority="LOWEST")
    runner.train()

    steps, rss, secs = zip(*records)
    half = min(range(len(steps)), key=lambda i: abs(steps[i] - steps[-1] / 2))
    growth = rss[-1] - rss[half]
    plateau = growth <= max(0.05 * rss[half], 50)
    print(f"\nmalloc keeps freed memory: {kept}; {args.steps} steps at {args.image_size} px in {secs[-1] / 60:.1f} min")
    print(f"RSS: start {rss[0]:.0f} MB, step {steps[half]} {rss[half]:.0f} MB, peak {max(rss):.0f} MB, "
          f"end {rss[-1]:.0f} MB; growth over the second half {growth:+.0f} MB "
          f"({growth / rss[half]:+.1%}): {'plateau' if plateau else 'STILL GROWING'}")

    plot = Path(args.plot)
    plot.parent.mkdir(parents=True, exist_ok=True)
    plot.with_suffix(".json").write_text(json.dumps(dict(
        steps=steps, rss_mb=rss, seconds=secs, image_size=args.image_size, keep_freed_memory=kept,
        command=" ".join([Path(sys.argv[0]).name, *sys.argv[1:]])), indent=1))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=110)
    ax.plot(steps, rss, marker="o", markersize=3)
    ax.set_xlabel("training step")
    ax.set_ylabel("resident memory (MB)")
    ax.set_ylim(0, max(rss) * 1.15)
    ax.set_title(f"main job model, {args.image_size} px, 4 scenes x 2 tasks per step"
                 f"{', malloc defaults' if not kept else ''}", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(plot)
    print(f"wrote {plot} and {plot.with_suffix('.json')}")


if __name__ == "__main__":
    main()
