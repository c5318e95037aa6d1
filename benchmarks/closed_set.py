"""What a closed label set costs per decoding step.

    python benchmarks/closed_set.py [--preset base] [--tokens 64] [--beams 3] [--classes 80]

Random weights (no download), the published vocabulary size (ids the offline tokenizer lacks are
suppressed), exactly ``--tokens`` new tokens per run so both runs take the same number of steps:
``<OD>`` generation without and with ``classes=`` (``--classes`` COCO-like names). Prints seconds
per step for both and the overhead of the constraint as a fraction of a step.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from PIL import Image

import florence
from florence import Florence2Config, Florence2ForConditionalGeneration, Florence2Processor, build_tokenizer, hardware

NAMES = ("person bicycle car motorcycle airplane bus train truck boat traffic-light fire-hydrant stop-sign "
         "parking-meter bench bird cat dog horse sheep cow elephant bear zebra giraffe backpack umbrella handbag "
         "tie suitcase frisbee skis snowboard sports-ball kite baseball-bat baseball-glove skateboard surfboard "
         "tennis-racket bottle wine-glass cup fork knife spoon bowl banana apple sandwich orange broccoli carrot "
         "hot-dog pizza donut cake chair couch potted-plant bed dining-table toilet tv laptop mouse remote "
         "keyboard cell-phone microwave oven toaster sink refrigerator book clock vase scissors teddy-bear "
         "hair-drier toothbrush").split()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="base")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--beams", type=int, default=3)
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()

    classes = [n.replace("-", " ") for n in NAMES[:args.classes]]
    tok = build_tokenizer(classes, vocab_size=400)
    torch.manual_seed(0)
    model = Florence2ForConditionalGeneration(Florence2Config.preset(args.preset, vocab_size=51289))
    pipe = florence.pipeline(model, Florence2Processor(tok))
    image = Image.fromarray((np.random.RandomState(0).rand(480, 640, 3) * 255).astype(np.uint8))
    prompt = florence.get_task("<OD>").prompt()
    gen = dict(max_new_tokens=args.tokens, min_new_tokens=args.tokens, num_beams=args.beams,
               suppress_tokens=list(range(len(tok), 51289)))

    inside = []  # seconds spent in the constraint per run

    class Timed:
        def __init__(self, processor):
            self.processor = processor

        def __call__(self, input_ids, scores):
            t0 = time.perf_counter()
            out = self.processor(input_ids, scores)
            inside[-1] += time.perf_counter() - t0
            return out

    def run(constrained: bool) -> float:
        kwargs = gen
        if constrained:
            kwargs = pipe._closed_set({florence.get_task("<OD>")}, classes, gen)
            *rest, constraint = kwargs["logits_processor"]
            kwargs = {**kwargs, "logits_processor": [*rest, Timed(constraint)]}
            inside.append(0.0)
        t0 = time.perf_counter()
        pipe.generate_texts([image], [prompt], **kwargs)
        return time.perf_counter() - t0

    run(False), run(True)  # warm-up
    best = {c: min(run(c) for _ in range(args.reps)) for c in (False, True)}
    free, closed = best[False] / args.tokens, best[True] / args.tokens
    own = min(inside[1:]) / args.tokens
    print(f"{torch.get_num_threads()} threads, {hardware.describe()}, {args.preset}, {args.beams} beams, "
          f"{args.tokens} tokens, {len(classes)} classes, fp32, best of {args.reps}")
    print(f"whole generate per step (image encoding and scoring included): without {free * 1000:.1f} ms, "
          f"with classes {closed * 1000:.1f} ms ({(closed - free) / free:+.1%})")
    print(f"the constraint itself: {own * 1000:.2f} ms per step = {own / free:.1%} of a step")


if __name__ == "__main__":
    main()
