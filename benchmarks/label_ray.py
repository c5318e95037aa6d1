"""Labelling throughput: the local engine vs Ray Data (1 replica holding every CPU, then one replica per
CPU) on one machine, side by side in one run.

    python benchmarks/label_ray.py [--presets tiny base] [--images 800 64] [--tokens 20] [--split] [--tars]

Random weights (no download) at the published vocabulary size (51289 rows; ids the offline tokenizer
lacks are suppressed), saved as model folders; every image generates exactly ``--tokens`` new tokens for
``<OD>``, so every engine does the same work; 640x480 images of noise. The dtype is florence's "auto"
(bf16 where the CPU has native bf16, else float32). Per engine: images/s of the whole ``label(...)``
call (model loading and Ray's actor start included; a local Ray of all the machine's CPUs is started
before the clock) and its ratio to the local engine's, and the seconds to the first shard written (a
shard is one batch): the start-up. ``--split`` adds Ray with the read and filter stages in actors of
their own (as for GPU replicas) beside one replica per CPU; ``--tars`` adds one replica per CPU reading
the same images from tar shards (``florence.data.write_shards``, a tar per batch, written before the
clock). The last column checks that every engine wrote the same labels (image names aside).
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
from florence.data import write_shards
from florence.label import label, ray_engine

TEXTS = ["Locate the objects with category name in the image.", "a red car next to a green tree"]
VOCAB = 51289


def first_shard(folder: Path, started: float) -> float:
    """Seconds from the start of the call to the first shard's counts file (saved when it is done)."""
    return min(f.stat().st_mtime for f in folder.glob("shard-*.json")) - started


def labels(folder: Path) -> list:
    """The labels written, in order, without the images' names (paths, or tar and key)."""
    return [dict(json.loads(line), image=None) for f in sorted(folder.glob("shard-*.jsonl"))
            for line in f.read_text().splitlines()]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--presets", nargs="+", default=["tiny", "base"])
    parser.add_argument("--images", nargs="+", type=int, default=[800, 64], help="images per preset")
    parser.add_argument("--tokens", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--split", action="store_true", help="also Ray with reading and filtering in actors")
    parser.add_argument("--tars", action="store_true", help="also Ray reading the images from tar shards")
    args = parser.parse_args()
    import ray

    cpus = os.cpu_count()
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    tok = build_tokenizer(TEXTS, vocab_size=300)
    gen = dict(num_beams=1, max_new_tokens=args.tokens, min_new_tokens=args.tokens,
               suppress_tokens=list(range(len(tok), VOCAB)))
    engines = [("local", {}), ("ray, 1 replica", dict(engine="ray", replicas=1, cpus_per_replica=cpus)),
               (f"ray, {cpus} replicas", dict(engine="ray", replicas=cpus, cpus_per_replica=1))]
    if args.split:
        engines.append((f"{cpus} replicas, split", dict(engine="ray", replicas=cpus, cpus_per_replica=1)))
    if args.tars:
        engines.append((f"{cpus} replicas, tars", dict(engine="ray", replicas=cpus, cpus_per_replica=1)))
    print(f"CPU {cpu_capability()}, native bf16: {native_bf16()}; {cpus} CPUs, <OD>, {args.tokens} new tokens "
          f"per image, batch {args.batch_size}")
    print("per engine: img/s of the whole run (models loaded, replicas started), its ratio to local, "
          "and seconds to the first shard")
    print(f"{'preset':8s} {'images':>6s} " + " ".join(f"{name:>24s}" for name, _ in engines))
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
            if args.tars:
                write_shards([dict(image=str(f)) for f in sorted(images.iterdir())], tmp / f"tars-{preset}",
                             samples_per_shard=args.batch_size)
            rates, written = [], []
            for name, kwargs in engines:
                out = tmp / f"{preset}-{name.replace(' ', '').replace(',', '-')}"
                ray_engine.SPLIT_STAGES = True if name.endswith("split") else None
                started = time.time()
                given = tmp / f"tars-{preset}" if name.endswith("tars") else images
                label(str(folder), str(given), ["<OD>"], out, filters=[], batch_size=args.batch_size,
                      shard_size=args.batch_size, generation=gen, progress=False, **kwargs)
                rates.append((n / (time.time() - started), first_shard(out, started)))
                written.append(labels(out))
            same = all(w == written[0] for w in written[1:])
            print(f"{preset:8s} {n:6d} " + " ".join(f"{w:7.2f} ({w / rates[0][0]:.2f}x) {f:6.1f} s" for w, f in rates)
                  + ("  same labels" if same else "  (labels differ!)"), flush=True)


if __name__ == "__main__":
    main()
