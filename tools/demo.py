"""Run Florence-2 on one image and print what it generates, with timings.

    python tools/demo.py                                   # tiny random model, built-in image
    python tools/demo.py --model path/to/Florence-2-base --image photo.jpg --task "<OD>"

Without ``--model`` it builds the ``tiny`` preset with random weights and a tokenizer trained
offline, so it needs no download; its text is therefore noise, but every stage (preprocessing,
DaViT, projector, BART encoder, beam search, decoding, location-token parsing) runs for real.
With ``--model`` (a local folder in either published layout, or a hub id when the hub is
reachable) the output is the checkpoint's.
"""
from __future__ import annotations

import argparse
import time

import torch
from PIL import Image, ImageDraw

import florence
from florence import Florence2Config, Florence2ForConditionalGeneration, Florence2Processor, build_tokenizer

DEMO_TEXTS = [
    "a red square and a blue circle on a white background",
    "What does the image describe?",
    "Locate the objects with category name in the image.",
    "What is the text in the image?",
]


def demo_image(size=(640, 480)) -> Image.Image:
    """A small scene drawn with PIL: shapes and a word, so the demo needs no files."""
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    draw.rectangle((60, 80, 260, 280), fill=(220, 40, 40))
    draw.ellipse((340, 140, 560, 360), fill=(40, 80, 220))
    draw.text((80, 400), "florence", fill="black")
    return img


def build_tiny(seed: int = 0):
    torch.manual_seed(seed)
    tokenizer = build_tokenizer(DEMO_TEXTS, vocab_size=300)
    config = Florence2Config.preset("tiny", vocab_size=len(tokenizer))
    return Florence2ForConditionalGeneration(config).eval(), Florence2Processor(tokenizer)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="checkpoint folder or hub id (default: tiny random model)")
    parser.add_argument("--image", help="image file (default: a drawn scene)")
    parser.add_argument("--task", default="<CAPTION>", help="task token or name (see `florence tasks`)")
    parser.add_argument("--text", help="task input, for tasks that take one")
    parser.add_argument("--max-new-tokens", type=int, default=20)
    parser.add_argument("--num-beams", type=int, default=3)
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    if args.model:
        pipe = florence.pipeline(args.model)
    else:
        pipe = florence.pipeline(*build_tiny())
    n_params = sum(p.numel() for p in pipe.model.parameters())
    t_build = time.perf_counter() - t0

    image = args.image or demo_image()
    task = florence.get_task(args.task)
    t0 = time.perf_counter()
    result = pipe(image, task, args.text, max_new_tokens=args.max_new_tokens, num_beams=args.num_beams)
    t_run = time.perf_counter() - t0

    print(f"model      : {args.model or 'tiny preset, random weights'} ({n_params / 1e6:.2f}M parameters)")
    print(f"image      : {args.image or 'built-in drawn scene'}")
    print(f"prompt     : {task.prompt(args.text, (640, 480))!r}")
    print(f"result     : {result}")
    print(f"time       : build {t_build:.2f}s | preprocess + encode + generate + parse {t_run:.2f}s "
          f"({torch.get_num_threads()} threads, {args.num_beams} beams)")


if __name__ == "__main__":
    main()
