"""Labelling throughput: the local engine vs Ray Data (1 replica holding every CPU, then one replica per
CPU) on one machine, side by side in one run.

    python benchmarks/label_ray.py [--presets tiny base] [--images 64 16] [--tokens 20]

Random weights (no download) at the published vocabulary size (51289 rows; ids the offline tokenizer
lacks are suppressed), saved as model folders; every image generates exactly ``--tokens`` new tokens for
``<OD>``, so every engine does the same work; 640x480 images of noise. The dtype is florence's "auto"
(bf16 where the CPU has native bf16, else float32). Two rates: the whole ``label(...)`` call (model
loading and Ray's actor start included; a local Ray of all the machine's CPUs is started before the
clock), and the steady rate between the first and the last shard written (a shard is one batch); the
ratio of each to the local engine's, and a check that every engine wrote the same labels.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from florence import Florence2Config, Florence2ForConditionalGeneration, build_tokenizer
from florence.hardware import cpu_capability, native_bf16
from florence.label import label

TEXTS = ["Locate the objects with category name in the image.", "a red car next to a green tree"]
VOCAB = 51289


def steady(folder: Path) -> float:
    """Images per second between the first and the last shard written (each shard's counts file is
    saved when it is done): the rate once models are loaded and replicas started."""
    done = sorted((f.stat().st_mtime, json.loads(f.read_text())["images"]) for f in folder.glob("shard-*.json"))
    return sum(n for _, n in done[1:]) / (done[-1][0] - done[0][0])


def labels(folder: Path) -> list:
    return [line for f in sorted(folder.glob("shard-*.jsonl")) for line in f.read_text().splitlines()]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--presets", nargs="+", default=["tiny", "base"])
    parser.add_argument("--images", nargs="+", type=int, default=[96, 16], help="images per preset")
    parser.add_argument("--tokens", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args()
    import ray

    cpus = os.cpu_count()
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    tok = build_tokenizer(TEXTS, vocab_size=300)
    gen = dict(num_beams=1, max_new_tokens=args.tokens, min_new_tokens=args.tokens,
               suppress_tokens=list(range(len(tok), VOCAB)))
    engines = [("local", {}), ("ray, 1 replica", dict(engine="ray", replicas=1, cpus_per_replica=cpus)),
               (f"ray, {cpus} replicas", dict(engine="ray", replicas=cpus, cpus_per_replica=1))]
    print(f"CPU {cpu_capability()}, native bf16: {native_bf16()}; {cpus} CPUs, <OD>, {args.tokens} new tokens "
          f"per image, batch {args.batch_size}")
    print("img/s: whole run (models loaded, replicas started) / steady (first to last shard); a shard = a batch")
    print(f"{'preset':8s} {'images':>6s} " + " ".join(f"{name:>22s}" for name, _ in engines)
          + "  ray / local (whole / steady)")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for preset, n in zip(args.presets, args.images * len(args.presets)):
            torch.manual_seed(0)
            model = Florence2ForConditionalGeneration(Florence2Config.preset(preset, vocab_size=VOCAB))
            folder = tmp / preset
            model.save_pretrained(folder)
            tok.save_pretrained(str(folder))
            del model
            images = tmp / f"images-{preset}"
            images.mkdir()
            rs = np.random.RandomState(0)
            for i in range(n):
                Image.fromarray((rs.rand(480, 640, 3) * 255).astype(np.uint8)).save(images / f"{i:04d}.png")
            rates, written = [], []
            for name, kwargs in engines:
                out = tmp / f"{preset}-{name.replace(' ', '').replace(',', '-')}"
                started = time.perf_counter()
                label(str(folder), str(images), ["<OD>"], out, filters=[], batch_size=args.batch_size,
                      shard_size=args.batch_size, generation=gen, progress=False, **kwargs)
                rates.append((n / (time.perf_counter() - started), steady(out)))
                written.append(labels(out))
            same = all(w == written[0] for w in written[1:])
            print(f"{preset:8s} {n:6d} " + " ".join(f"{w:9.2f} / {r:<10.2f}" for w, r in rates) + "  "
                  + " ".join(f"{w / rates[0][0]:.2f} / {r / rates[0][1]:.2f}" for w, r in rates[1:])
                  + ("" if same else "  (labels differ!)"))


if __name__ == "__main__":
    main()
