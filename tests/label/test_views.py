"""Annotators from views of one model (test-time augmentation): a pixel-reading annotator's boxes come
back exactly through mirrored and rescaled views, quads and polygons keep their shape, consensus over
views drops what only one view sees, and views of one checkpoint load it once."""
import json

import numpy as np
import pytest
from PIL import Image

from florence.label import Consensus, label
from florence.label.engine import _annotators
from florence.label.rounds import _export_name, _exported
from florence.label.views import Augmented, RandomViews, View
from florence.task import Shape

RED = [(20, 10, 60, 30), (84, 44, 112, 72)]  # (x1, y1, x2, y2), x2 and y2 the first pixel past the box


def page() -> Image.Image:
    image = np.full((80, 120, 3), 255, np.uint8)
    for x1, y1, x2, y2 in RED:
        image[y1:y2, x1:x2] = (220, 30, 30)
    return Image.fromarray(image)


def red_boxes(images, task):
    """An annotator that reads pixels: the box of each red blob's pixels (edges on pixel borders)."""
    from scipy import ndimage

    out = []
    for image in images:
        a = np.asarray(image).astype(int)
        red = (a[..., 0] > 150) & (a[..., 1] < 100)
        blobs, n = ndimage.label(red)
        boxes = [[float(s[1].start), float(s[0].start), float(s[1].stop), float(s[0].stop)]
                 for s in ndimage.find_objects(blobs)]
        out.append({"bboxes": boxes, "labels": ["red"] * n, "scores": [0.9] * n})
    return out


@pytest.mark.parametrize("view", ["identity", "hflip", "scale:0.5", "hflip+scale:0.5", "scale:2", "hflip+scale:2",
                                  "vflip", "hflip+vflip", "vflip+scale:0.5"])
def test_boxes_read_through_a_view_come_back_exactly(view):
    got = Augmented(red_boxes, view)([page()], "<OD>")[0]
    assert sorted(map(tuple, got["bboxes"])) == sorted(RED)
    seen = red_boxes([View.parse(view).apply(page())], "<OD>")[0]["bboxes"]
    assert sorted(map(tuple, seen)) != sorted(RED) or view == "identity"  # the view did change the pixels


def test_quads_and_polygons_come_back_in_the_images_pixels():
    view, size = View(flip=True, scale=0.5), (100, 50)
    quad = view.back(Shape("quad", [0, 0, 10, 0, 10, 5, 0, 5]), size).coords
    assert quad == [80, 0, 100, 0, 100, 10, 80, 10]  # top-left first, clockwise, as the parsers give
    poly = view.back(Shape("polygon", [[0, 0, 10, 0, 10, 5]]), size).coords
    assert poly == [[100, 0, 80, 0, 80, 10]]
    # upside down: the corner that was bottom-left is top-left; both mirrors: a half turn
    quad = Shape("quad", [10, 5, 30, 5, 30, 15, 10, 15])
    assert View(vflip=True).back(quad, (100, 50)).coords == [10, 35, 30, 35, 30, 45, 10, 45]
    slanted = Shape("quad", [10, 5, 30, 8, 28, 15, 9, 12])  # corners: top-left, top-right, bottom-right, bottom-left
    assert View(flip=True, vflip=True).back(slanted, (100, 50)).coords == [72, 35, 91, 38, 90, 45, 70, 42]
    for view in (View(flip=True), View(vflip=True), View(True, 0.5, True)):  # forward undoes back
        assert view.forward(view.back(slanted, (100, 50)), (100, 50)).coords == pytest.approx(slanted.coords)
    assert View.parse("hflip+scale:0.75") == View(True, 0.75) and str(View(True, 0.75)) == "hflip+scale:0.75"
    assert View.parse("vflip+hflip") == View(True, 1.0, True) and str(View(vflip=True)) == "vflip"
    for bad in ("rotate", "scale:big", "scale:9", 3):
        with pytest.raises(ValueError, match="view|scale"):
            View.parse(bad)


def seen_once(images, task):
    """The red blobs, plus a box only this view's top-left corner has (a view's own artefact)."""
    out = red_boxes(images, task)
    for o in out:
        o["bboxes"].append([0.0, 0.0, 10.0, 10.0]), o["labels"].append("red"), o["scores"].append(0.9)
    return out


def test_consensus_over_views_keeps_what_two_views_agree_on(tmp_path):
    views = ["identity", "hflip", "scale:0.5"]
    outputs = [Augmented(seen_once, v)([page()], "<OD>")[0] for v in views]
    merged = Consensus(min_votes=2, iou_threshold=0.5)(outputs, "<OD>")
    assert np.allclose(sorted(merged["bboxes"]), sorted(RED))  # each view's corner box had one vote
    # the same through the labelling run, the views named in the labels
    page().save(tmp_path / "page.png")
    manifest = label([dict(model=seen_once, view=v) for v in views], [str(tmp_path / "page.png")], ["<OD>"],
                     tmp_path / "out", merge=dict(type="Consensus", min_votes=2), progress=False)
    assert manifest["annotators"] == ["seen_once [identity]", "seen_once [hflip]", "seen_once [scale:0.5]"]
    line = json.loads((tmp_path / "out" / "shard-00000.jsonl").read_text())
    assert np.allclose(sorted(line["annotation"]["bboxes"]), sorted(RED))


def test_views_of_one_checkpoint_load_it_once(tiny_folder, monkeypatch):
    import florence.inference

    calls = []
    real = florence.inference.pipeline
    monkeypatch.setattr(florence.inference, "pipeline", lambda *a, **k: calls.append(a) or real(*a, **k))
    runners = _annotators([str(tiny_folder), dict(model=str(tiny_folder), view="hflip")], {"max_new_tokens": 5})
    assert len(calls) == 1 and [n for n, _ in runners] == [str(tiny_folder), f"{tiny_folder} [hflip]"]
    with pytest.raises(ValueError, match=r"dict\(model=..., view=...\)"):
        _annotators([dict(checkpoint="x", view="hflip")], {})


def test_views_of_a_training_checkpoint_share_one_export(tmp_path):
    spec = dict(config="configs/florence2/florence2_tiny_synthetic.py", checkpoint="work_dirs/x/iter_10.pth")
    names = {_export_name(dict(spec, view=v), k) for k, v in enumerate(["identity", "hflip", "scale:0.8"])}
    assert names == {_export_name(spec, 5)} and len(names) == 1
    folder = tmp_path / next(iter(names))
    folder.mkdir()
    (folder / "config.json").write_text("{}")  # exported already: not exported again
    assert _exported(dict(spec, view="hflip"), folder) == dict(model=str(folder), view="hflip")
    assert _export_name(str(tmp_path), 3) == "3"


def test_random_views_move_the_boxes_with_the_pixels():
    """A student's input noise: each sample through a random mirror, its boxes (and objects) where the
    red pixels now are; samples a mirror would make wrong stay as they are."""
    import random

    boxes = [list(map(float, b)) for b in RED]
    od = dict(image=page(), image_size=(120, 80), task="<OD>", text_input=None,
              annotation={"bboxes": boxes, "labels": ["red"] * 2}, objects={"bboxes": boxes, "labels": ["red"] * 2})
    caption = dict(image=page(), image_size=(120, 80), task="<CAPTION>", text_input=None, annotation="two red boxes")
    ocr = dict(od, task="<OCR_WITH_REGION>", annotation={"quad_boxes": [[20, 10, 60, 10, 60, 30, 20, 30]],
                                                         "labels": ["TEXT"]})
    data = RandomViews([od, caption, ocr], views=["hflip", "vflip", "hflip+vflip"])
    random.seed(3)
    seen = set()
    for _ in range(12):
        item = data[0]
        truth = sorted(map(tuple, red_boxes([item["image"]], "<OD>")[0]["bboxes"]))
        assert sorted(map(tuple, item["annotation"]["bboxes"])) == truth != sorted(RED)
        assert sorted(map(tuple, item["objects"]["bboxes"])) == truth and item["image_size"] == (120, 80)
        seen.add(tuple(truth))
        assert data[1] == caption and data[2] == ocr  # a caption, and read text, are not mirrored
    assert len(seen) == 3  # every view was drawn
    assert od["annotation"]["bboxes"] == boxes  # the source item is not changed
    assert RandomViews([od], views=["identity"])[0] is od
