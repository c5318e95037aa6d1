"""Tiled vs untiled inference on large pages: what ``tile=`` buys, and what it costs.

    python benchmarks/tiling.py CONFIG CHECKPOINT [--pages 20] [--tile 512] [--overlap 0.2 0.5] [--score-threshold 0.5]

Pages of 3000 x 2000 px (``--page``) drawn as ``florence.data.SyntheticScenes`` draws its scenes, at
the scale the checkpoint reads them after one ``--tile`` tile is resized to its input size: text
pages with 20-40 printed words, and shape pages with 20-40 coloured shapes of the scenes' sizes. The
exported checkpoint (fp32, the config's decoding, grammar on) reads each page whole (resized, the
published behaviour), in tiles at each ``--overlap``, and in tiles at the first overlap keeping the
regions scored at least ``--score-threshold``:

* ``<OCR>`` word F1 and ``<OCR_WITH_REGION>`` region F1 (line text equal and IoU >= 0.5) on the text
  pages;
* ``<OD>`` mAP and mAP@0.5 (pycocotools) on the shape pages;

and the seconds per page, with the time ratio tiled / untiled.
"""
from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageDraw

import florence
from florence import hardware
from florence.data.synthetic import COLOURS, SHAPES, WORDS, _font, _polygon
from florence.evaluation.functions import coco_bbox_map, ocr_region_f1, ocr_word_f1


def text_page(rng: random.Random, page, font_px: int):
    """A page of 20-40 printed words: (image, words as (box, text) in reading order)."""
    image = Image.new("RGB", page, tuple(rng.randint(215, 255) for _ in range(3)))
    draw, font, placed, words = ImageDraw.Draw(image), _font(font_px), [], []
    for _ in range(rng.randint(20, 40)):
        text = rng.choice(WORDS)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        box = _place_on(rng, right - left, bottom - top, page, placed, margin=font_px // 3)
        if box is not None:
            draw.text((box[0] - left, box[1] - top), text, fill=(20, 20, 20), font=font)
            words.append((box, text))
    words.sort(key=lambda w: (round(w[0][1] / font_px), w[0][0]))
    return image, words


def shape_page(rng: random.Random, page, side_px: float):
    """A page of 20-40 shapes, each side_px x (0.16-0.42) wide: (image, [(box, 'colour kind')])."""
    image = Image.new("RGB", page, tuple(rng.randint(215, 255) for _ in range(3)))
    draw, placed, shapes = ImageDraw.Draw(image), [], []
    for _ in range(rng.randint(20, 40)):
        kind, colour = rng.choice(SHAPES), rng.choice(list(COLOURS))
        side = rng.uniform(0.16, 0.42) * side_px
        box = _place_on(rng, side, side, page, placed, margin=side_px * 0.05)
        if box is None:
            continue
        if kind == "circle":
            draw.ellipse(box, fill=COLOURS[colour])
        else:
            poly = _polygon(kind, box)
            draw.polygon([(poly[i], poly[i + 1]) for i in range(0, len(poly), 2)], fill=COLOURS[colour])
        shapes.append((box, f"{colour} {kind}"))
    return image, shapes


def _place_on(rng, w, h, page, placed, margin):
    """A free box on a page (the scenes' placement on a square canvas, then stretched to the page)."""
    box = None
    for _ in range(50):
        x, y = rng.uniform(2, page[0] - w - 2), rng.uniform(2, page[1] - h - 2)
        cand = (x, y, x + w, y + h)
        if all(cand[2] + margin <= o[0] or o[2] + margin <= cand[0] or cand[3] + margin <= o[1]
               or o[3] + margin <= cand[1] for o in placed):
            box = cand
            break
    if box is not None:
        placed.append(box)
    return box


def _quad(box):
    x1, y1, x2, y2 = box
    return [x1, y1, x2, y1, x2, y2, x1, y2]


def measure(pipe, pages, task, tile, batch_size, threshold=None):
    """(predictions, seconds per page) of ``task`` on ``pages`` (images), tiled with ``tile`` or whole."""
    preds, start = [], time.perf_counter()
    for image in pages:
        preds.append(pipe(image, task, tile=tile, batch_size=batch_size, score_threshold=threshold)[task])
    return preds, (time.perf_counter() - start) / len(pages)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("config")
    parser.add_argument("checkpoint")
    parser.add_argument("--pages", type=int, default=20)
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--overlap", type=float, nargs="+", default=[0.2, 0.5])
    parser.add_argument("--page", type=int, nargs=2, default=[3000, 2000], metavar=("W", "H"))
    parser.add_argument("--score-threshold", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from florence.engine import export_checkpoint, load_config

    cfg = load_config(args.config)
    scenes = cfg.test_dataloader.dataset.datasets[0]
    size, text_size = scenes["image_size"], scenes["text_size"]
    gen = dict(cfg.model.get("generation") or {})
    with tempfile.TemporaryDirectory() as tmp:
        export_checkpoint(cfg, args.checkpoint, Path(tmp) / "model")
        pipe = florence.pipeline(str(Path(tmp) / "model"), dtype="float32", generation=gen)
    scale = args.tile / size  # page pixels per pixel the model reads in a tile
    font_px = max(12, round(size * text_size)) * scale
    rng = random.Random(args.seed)
    texts = [text_page(rng, tuple(args.page), round(font_px)) for _ in range(args.pages)]
    shapes = [shape_page(rng, tuple(args.page), size * scale) for _ in range(args.pages)]
    n_words, n_shapes = sum(len(w) for _, w in texts), sum(len(s) for _, s in shapes)
    settings = [("whole page", None, None)] + [(f"tiles {args.tile} px, overlap {o}", dict(size=args.tile, overlap=o),
                                                None) for o in args.overlap]
    settings.append((f"tiles {args.tile} px, overlap {args.overlap[0]}, scores >= {args.score_threshold}",
                     dict(size=args.tile, overlap=args.overlap[0]), args.score_threshold))
    print(f"{args.config} @ {args.checkpoint}: {args.pages} text pages ({n_words} words, {round(font_px)} px font) "
          f"and {args.pages} shape pages ({n_shapes} shapes) of {args.page[0]} x {args.page[1]} px; the model reads "
          f"{size} px, so a {args.tile} px tile is read at 1/{scale:g}; generation {gen}, grammar on, fp32, "
          f"{hardware.describe()}\n")
    print("| reading | OCR word F1 | OCR region F1 | OD mAP | OD mAP@0.5 | s / page (OCR, regions, OD) "
          "| time vs whole |")
    print("|---|---|---|---|---|---|---|")
    base = None
    for name, tile, threshold in settings:
        batch = 64
        ocr, t1 = measure(pipe, [im for im, _ in texts], "<OCR>", tile, batch, threshold)
        lines, t2 = measure(pipe, [im for im, _ in texts], "<OCR_WITH_REGION>", tile, batch, threshold)
        od, t3 = measure(pipe, [im for im, _ in shapes], "<OD>", tile, batch, threshold)
        word_f1 = ocr_word_f1([{"pred": p, "gt": " ".join(t for _, t in w)} for p, (_, w) in zip(ocr, texts)])
        region_f1 = ocr_region_f1([{"pred": p, "gt": {"quad_boxes": [_quad(b) for b, _ in w],
                                                      "labels": [t for _, t in w]}} for p, (_, w) in zip(lines, texts)])
        od_map = coco_bbox_map([{"pred": p, "image_size": tuple(args.page),
                                 "gt": {"bboxes": [list(b) for b, _ in s], "labels": [c for _, c in s]}}
                                for p, (_, s) in zip(od, shapes)])
        total = t1 + t2 + t3
        base = base or total
        print(f"| {name} | {word_f1['word_F1']:.3f} | {region_f1['region_F1']:.3f} | {od_map['bbox_mAP']:.3f} | "
              f"{od_map['bbox_mAP_50']:.3f} | {t1:.2f}, {t2:.2f}, {t3:.2f} | {total / base:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
