"""Synthetic datasets in the real on-disk formats the downstream configs read, drawn from florence's
synthetic scenes (coloured squares, circles and triangles with exact boxes and polygons):

- COCO instance segmentation: ``coco/annotations/instances_{train,val}2017.json`` (boxes, polygon
  masks, areas) + ``coco/{train,val}2017/*.jpg``, with COCO's 80 categories (mmdet's CocoDataset
  and CocoMetric look them up by name); the three shape kinds are filed under three of them;
- ADE20K semantic segmentation: ``ade/ADEChallengeData2016/images/{training,validation}/*.jpg`` +
  ``annotations/.../*.png`` (uint8, 0 = "other", k = ADE20K class k: the shapes drawn as classes 1-3).
"""
import json
import random
from pathlib import Path

import pytest
from mmdet.datasets import CocoDataset
from PIL import Image, ImageDraw

from florence.data.synthetic import SHAPES, make_scene

SIZE = 96
COCO_NAMES = {"square": "person", "circle": "car", "triangle": "dog"}
SPLITS = {"train": 4, "val": 2}  # 4 training images: two iterations of batch 2


def _scenes(n, seed):
    return [make_scene(random.Random(seed * 1000 + i), SIZE) for i in range(n)]


@pytest.fixture(scope="session")
def coco_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("coco")
    (root / "annotations").mkdir()
    ids = {name: i + 1 for i, name in enumerate(CocoDataset.METAINFO["classes"])}
    for seed, (split, n) in enumerate(SPLITS.items()):
        (root / f"{split}2017").mkdir()
        images, annotations = [], []
        for i, scene in enumerate(_scenes(n, seed)):
            name = f"{i:012d}.jpg"
            scene.image.save(root / f"{split}2017" / name, quality=95)
            images.append(dict(id=i + 1, file_name=name, width=SIZE, height=SIZE))
            for s in scene.shapes:
                x1, y1, x2, y2 = s.box
                annotations.append(dict(
                    id=len(annotations) + 1, image_id=i + 1, category_id=ids[COCO_NAMES[s.kind]],
                    bbox=[x1, y1, x2 - x1, y2 - y1], area=float((x2 - x1) * (y2 - y1)), iscrowd=0,
                    segmentation=[[float(v) for v in s.polygon]]))
        categories = [dict(id=i, name=n, supercategory="thing") for n, i in ids.items()]
        (root / "annotations" / f"instances_{split}2017.json").write_text(json.dumps(
            dict(images=images, annotations=annotations, categories=categories)))
    return root


@pytest.fixture(scope="session")
def ade_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ade") / "ADEChallengeData2016"
    for seed, (split, n) in enumerate((("training", 4), ("validation", 2))):
        (root / "images" / split).mkdir(parents=True)
        (root / "annotations" / split).mkdir(parents=True)
        for i, scene in enumerate(_scenes(n, seed + 10)):
            name = f"ADE_{split[:5]}_{i:08d}"
            scene.image.save(root / "images" / split / f"{name}.jpg", quality=95)
            label = Image.new("L", (SIZE, SIZE), 0)
            draw = ImageDraw.Draw(label)
            for s in scene.shapes:
                p = s.polygon
                draw.polygon([(p[k], p[k + 1]) for k in range(0, len(p), 2)], fill=SHAPES.index(s.kind) + 1)
            label.save(root / "annotations" / split / f"{name}.png")
    return root
