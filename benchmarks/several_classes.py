"""k classes of one image in one call vs k calls (open-vocabulary detection).

    python benchmarks/several_classes.py [--presets base] [--ks 1 4 16] [--tokens 16] [--beams 3]

One call with k classes encodes the image once and decodes the k prompts as one padded batch
(``pipe(image, "<OPEN_VOCABULARY_DETECTION>", classes)``); k calls encode it k times, one prompt
each. Random weights (no download), the published vocabulary size (ids the offline tokenizer lacks
are suppressed), every prompt generating exactly ``--tokens`` new tokens so both sides do the same
decoding work. Prints seconds for both and their ratio, and checks the merged result equals the k
calls' results put together (without scores, which differ by float summation order).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from PIL import Image

import florence
from florence import Florence2Config, Florence2ForConditionalGeneration, Florence2Processor, build_tokenizer, hardware
from florence.task import Shape

TASK = "<OPEN_VOCABULARY_DETECTION>"
WORDS = ["car", "person", "traffic light", "dog", "bicycle", "red bus", "tree", "stop sign", "cat", "boat",
         "bird", "chair", "cup", "umbrella", "kite", "bench"]


def merged_by_hand(results, classes):
    task = florence.get_task(TASK)
    regions = [r if r.label else Shape(r.kind, r.coords, c, r.score)
               for out, c in zip(results, classes) for r in task.regions(out[TASK])]
    return {k: v for k, v in task.with_regions(results[0][TASK], regions).items() if k != "scores"}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--presets", nargs="+", default=["base"])
    parser.add_argument("--ks", nargs="+", type=int, default=[1, 4, 16])
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--beams", type=int, default=3)
    parser.add_argument("--reps", type=int, default=2)
    args = parser.parse_args()

    tok = build_tokenizer(WORDS + ["Locate " + w for w in WORDS], vocab_size=300)
    image = Image.fromarray((np.random.RandomState(0).rand(480, 640, 3) * 255).astype(np.uint8))
    gen = dict(max_new_tokens=args.tokens, min_new_tokens=args.tokens, num_beams=args.beams,
               suppress_tokens=list(range(len(tok), 51289)))
    print(f"{torch.get_num_threads()} threads, {hardware.describe()}, {args.tokens} new tokens per class, "
          f"{args.beams} beams, fp32, best of {args.reps}")
    print(f"{'preset':8s} {'k':>3s} {'k calls s':>10s} {'one call s':>11s} {'one / k calls':>14s}")
    for preset in args.presets:
        torch.manual_seed(0)
        model = Florence2ForConditionalGeneration(Florence2Config.preset(preset, vocab_size=51289))
        pipe = florence.pipeline(model, Florence2Processor(tok))
        pipe(image, TASK, WORDS[0], **gen)  # warm-up
        for k in args.ks:
            classes = [WORDS[i % len(WORDS)] for i in range(k)]
            t_calls = t_one = float("inf")
            for _ in range(args.reps):
                t0 = time.perf_counter()
                separate = [pipe(image, TASK, c, **gen) for c in classes]
                t_calls = min(t_calls, time.perf_counter() - t0)
                t0 = time.perf_counter()
                one = pipe(image, TASK, classes, batch_size=1, **gen)
                t_one = min(t_one, time.perf_counter() - t0)
            same = {f: v for f, v in one[TASK].items() if f != "scores"} == merged_by_hand(separate, classes)
            print(f"{preset:8s} {k:3d} {t_calls:10.2f} {t_one:11.2f} {t_one / t_calls:14.2f}"
                  + ("" if same else "  (results differ!)"))


if __name__ == "__main__":
    main()
