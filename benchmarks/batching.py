"""Pipeline throughput: 8 images with mixed tasks in one batch vs one at a time.

    python benchmarks/batching.py [--presets tiny base] [--tokens 32] [--beams 3]

Random weights (no download), the published vocabulary size (51289 rows; ids the offline
tokenizer lacks are suppressed), every image generating exactly ``--tokens`` new tokens so both
runs do the same work. Prints seconds per image and the ratio.
"""
from __future__ import annotations

import argparse
import random
import time

import numpy as np
import torch
from PIL import Image

import florence
from florence import Florence2Config, Florence2ForConditionalGeneration, Florence2Processor, build_tokenizer

TEXTS = ["What does the image describe?", "Locate the objects with category name in the image.",
         "a red car next to a green tree", "What is the text in the image?"]


def without_scores(result: dict) -> dict:
    return {k: ({f: x for f, x in v.items() if f != "scores"} if isinstance(v, dict) else v)
            for k, v in result.items()}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--presets", nargs="+", default=["tiny", "base"])
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--beams", type=int, default=3)
    parser.add_argument("--images", type=int, default=8)
    args = parser.parse_args()

    tok = build_tokenizer(TEXTS, vocab_size=300)
    rs = np.random.RandomState(0)
    images = [Image.fromarray((rs.rand(480, 640, 3) * 255).astype(np.uint8)) for _ in range(args.images)]
    tasks = [florence.list_tasks()[i % 15] for i in range(args.images)]
    rng = random.Random(0)
    inputs = [t.example(rng, im.size)[0] for t, im in zip(tasks, images)]
    gen = dict(max_new_tokens=args.tokens, min_new_tokens=args.tokens, num_beams=args.beams,
               suppress_tokens=list(range(len(tok), 51289)))
    print(f"{torch.get_num_threads()} threads, {args.images} images, {args.tokens} new tokens each, "
          f"{args.beams} beams, fp32")
    print(f"{'preset':8s} {'one at a time s/img':>20s} {'batch s/img':>12s} {'batch / single':>15s}")
    for preset in args.presets:
        torch.manual_seed(0)
        model = Florence2ForConditionalGeneration(Florence2Config.preset(preset, vocab_size=51289))
        pipe = florence.pipeline(model, Florence2Processor(tok))
        pipe(images[:1], tasks[:1], inputs[:1], **gen)  # warm-up
        t0 = time.perf_counter()
        single = [pipe(im, t, x, **gen) for im, t, x in zip(images, tasks, inputs)]
        t_single = (time.perf_counter() - t0) / args.images
        t0 = time.perf_counter()
        batched = pipe(images, tasks, inputs, batch_size=args.images, **gen)
        t_batch = (time.perf_counter() - t0) / args.images
        same = [without_scores(a) for a in single] == [without_scores(b) for b in batched]
        print(f"{preset:8s} {t_single:20.2f} {t_batch:12.2f} {t_batch / t_single:15.2f}"
              + ("" if same else "  (results differ!)"))


if __name__ == "__main__":
    main()
