"""Tiled inference (``tile=``): the grid is supervision's (SAHI's rule), regions map back exactly, cut
pieces join, duplicates go as SAHI's greedy matching by intersection over the smaller box would (checked
against supervision's), and a tiled call equals the merge of its tiles read one at a time."""
import json
import random

import numpy as np
import pytest
from PIL import Image

import florence
from florence.task import Shape, TaskError
from florence.tiling import Tiling, check_tiling, join_text, merge, reading_order, shifted, tiled_task, windows
from helpers import same_result

GEN = dict(max_new_tokens=40, num_beams=1)


@pytest.mark.parametrize("image_size, size, overlap", [((250, 90), 100, 0.2), ((3000, 2000), 768, 0.2),
                                                       ((3000, 2000), 768, 0.5), ((700, 700), 768, 0.2),
                                                       ((1000, 300), 256, 0.25)])
def test_the_grid_is_supervisions(image_size, size, overlap):
    from supervision.detection.tools.inference_slicer import InferenceSlicer

    step = round(size * (1 - overlap))
    theirs = InferenceSlicer._generate_offset(image_size, (size, size), (size - step, size - step))
    assert windows(image_size, Tiling(size, overlap)) == [tuple(map(int, w)) for w in theirs]


def test_shapes_map_back_exactly():
    assert shifted(Shape("box", [1, 2, 3, 4], "a", 0.5), 10, 20) == Shape("box", [11, 22, 13, 24], "a", 0.5)
    assert shifted(Shape("quad", [0, 0, 1, 0, 1, 1, 0, 1]), 5, 7).coords == [5, 7, 6, 7, 6, 8, 5, 8]
    assert shifted(Shape("polygon", [[0, 0, 1, 0, 1, 1], [2, 2, 3, 2, 3, 3]]), 1, 2).coords == \
        [[1, 2, 2, 2, 2, 3], [3, 4, 4, 4, 4, 5]]
    with pytest.raises(ValueError, match="x, y pairs"):
        shifted(Shape("box", [1, 2, 3]), 1, 1)


def _box(x1, y1, x2, y2, label="red square", score=0.9):
    return Shape("box", [x1, y1, x2, y2], label, score)


PAGE, T = (180, 90), Tiling(size=100, overlap=0.2)  # two tiles: (0, 0, 100, 90) and (80, 0, 180, 90)
LEFT, RIGHT = (0, 0, 100, 90), (80, 0, 180, 90)


def test_an_item_seen_by_two_tiles_is_kept_once_with_the_higher_score():
    got = merge([([_box(82, 10, 95, 30, score=0.6)], LEFT), ([_box(83, 11, 96, 31, score=0.8)], RIGHT)], PAGE, T)
    assert got == [_box(83, 11, 96, 31, score=0.8)]


def test_pieces_cut_by_the_border_between_tiles_join():
    got = merge([([_box(50, 10, 99.5, 40, score=0.7)], LEFT), ([_box(80.5, 12, 130, 42, score=0.8)], RIGHT)], PAGE, T)
    assert got == [_box(50, 10, 130, 42, score=0.8)]
    # pieces of different classes, or not on one line, stay apart
    assert len(merge([([_box(50, 10, 99.5, 40)], LEFT), ([_box(80.5, 12, 130, 42, "blue circle")], RIGHT)],
                     PAGE, T)) == 2
    assert len(merge([([_box(50, 10, 99.5, 40)], LEFT), ([_box(80.5, 38, 130, 80)], RIGHT)], PAGE, T)) == 2


def test_the_whole_images_item_wins_over_pieces_and_tiles_whole_items_win_over_it():
    pieces = [([_box(50, 10, 99.5, 40, score=0.9)], LEFT), ([_box(80.5, 12, 130, 42, score=0.9)], RIGHT)]
    whole = ([_box(48, 9, 133, 41, score=0.5)], None)
    assert merge(pieces + [whole], PAGE, T) == [_box(48, 9, 133, 41, score=0.5)]
    small = ([_box(10, 10, 30, 30, score=0.4)], LEFT)
    assert merge([small, ([_box(9, 9, 31, 32, score=0.99)], None)], PAGE, T) == [_box(10, 10, 30, 30, score=0.4)]


def test_a_text_line_cut_by_a_border_joins_its_text():
    a = ([Shape("quad", [50, 10, 99, 10, 99, 30, 50, 30], "THE CA", 0.9)], LEFT)
    b = ([Shape("quad", [81, 10, 120, 10, 120, 30, 81, 30], "CAT", 0.8)], RIGHT)
    joined = Shape("quad", [50, 10, 120, 10, 120, 30, 50, 30], "THE CAT", 0.9)
    assert merge([a, b], PAGE, T, labels_read=True) == [joined]
    assert join_text("THE CA", "CAT") == "THE CAT" and join_text("DOG", "SUN") == "DOG SUN"
    # a word read whole in one tile and cut in the other: the whole reading stays
    whole = ([Shape("quad", [83, 50, 97, 50, 97, 60, 83, 60], "SUN", 0.7)], RIGHT)
    part = ([Shape("quad", [82, 50, 99.5, 50, 99.5, 60, 82, 60], "SU", 0.9)], LEFT)
    assert [r.label for r in merge([part, whole], PAGE, T, labels_read=True)] == ["SUN"]


def test_a_lone_piece_does_not_hide_the_item_its_tiles_joined():
    """An object 650-1450 px wide across tiles starting at 0, 614 and 1228 (768 px): the first tile's
    piece lies inside the second's, which joins the third's; the joined item stays, scored lower."""
    page, tiling = (2000, 300), Tiling(size=768, overlap=0.2)
    a = ([_box(650, 100, 768, 200, score=0.95)], (0, 0, 768, 300))
    b = ([_box(650, 100, 1382, 200, score=0.6)], (614, 0, 1382, 300))
    c = ([_box(1228, 100, 1450, 200, score=0.7)], (1228, 0, 1996, 300))
    assert merge([a, b, c], page, tiling) == [_box(650, 100, 1450, 200, score=0.7)]


def test_a_piece_two_tiles_read_is_joined_once():
    """A line across a column border inside a row overlap: both tile rows read each of its pieces."""
    page, tiling = (180, 180), Tiling(size=100, overlap=0.2)  # tiles at 0 and 80 both ways

    def line(x1, x2, text, score, window):
        return [Shape("quad", [x1, 85, x2, 85, x2, 95, x1, 95], text, score)], window

    tiles = [line(50, 99.5, "THE QUICK", 0.9, (0, 0, 100, 100)), line(50, 99.5, "THE QUIOK", 0.5, (0, 80, 100, 180)),
             line(80.5, 130, "QUICK FOX", 0.8, (80, 0, 180, 100)),
             line(80.5, 130, "QUICK FOX", 0.7, (80, 80, 180, 180))]
    got = merge(tiles, page, tiling, labels_read=True)
    assert [r.label for r in got] == ["THE QUICK FOX"]


def test_pieces_join_across_tiles_that_do_not_overlap():
    """Without overlap the two pieces' edges are a location bin apart (bin centres), not touching."""
    got = merge([([_box(30, 10, 63.968, 40)], (0, 0, 64, 64)), ([_box(64.032, 12, 90, 42)], (64, 0, 128, 64))],
                (128, 64), Tiling(size=64, overlap=0))
    assert got == [_box(30, 10, 90, 42)]


def test_pieces_of_different_kinds_do_not_join():
    box = ([_box(50, 10, 99.5, 40)], LEFT)
    polygon = ([Shape("polygon", [[80.5, 12, 130, 12, 130, 42]], "red square", 0.9)], RIGHT)
    assert sorted(r.kind for r in merge([box, polygon], PAGE, T)) == ["box", "polygon"]


def test_join_text_needs_two_letters_in_common():
    assert join_text("THE DOG", "GOES HOME") == "THE DOG GOES HOME"
    assert join_text("THE DO", "DOG") == "THE DOG"


def test_reading_order_is_lines_top_to_bottom_then_left_to_right():
    words = [_box(60, 52, 80, 62, "D"), _box(5, 10, 20, 22, "A"), _box(40, 12, 55, 21, "B"), _box(5, 50, 20, 60, "C")]
    assert [r.label for r in reading_order(words)] == ["A", "B", "C", "D"]
    # a tall figure beside two lines does not pull the second line into the first
    tall = [_box(0, 0, 10, 100, "FIG"), _box(20, 5, 40, 15, "A1"), _box(50, 5, 70, 15, "A2"),
            _box(20, 55, 40, 65, "B1"), _box(50, 55, 70, 65, "B2")]
    assert [r.label for r in reading_order(tall[::-1])] == ["FIG", "A1", "A2", "B1", "B2"]
    regions = [Shape("quad", [0, 0, 9, 0, 9, 9, 0, 9], t) for t in "AB"]
    assert florence.get_task("<OCR>").from_regions(reading_order(regions)) == "A B"


def test_duplicates_are_suppressed_as_supervisions_greedy_merge_groups_them():
    """Whole items of tiles with one label: the kept ones are the leaders of supervision's greedy
    non-max-merge groups by intersection over the smaller box."""
    import supervision as sv

    rng = np.random.default_rng(0)
    for _ in range(20):
        xy = rng.uniform(5, 60, (30, 2))
        wh = rng.uniform(3, 25, (30, 2))
        boxes = np.concatenate([xy, xy + wh], 1)
        scores = rng.permutation(30) / 30 + 0.01
        shapes = [_box(*map(float, b), score=float(s)) for b, s in zip(boxes, scores)]
        kept = merge([(shapes, (0, 0, 90, 90))], (90, 90), Tiling(size=90, iou=0.5))
        groups = sv.box_non_max_merge(np.concatenate([boxes, scores[:, None]], 1), iou_threshold=0.5,
                                      overlap_metric=sv.OverlapMetric.IOS)
        leaders = {max(g, key=lambda i: scores[i]) for g in groups}
        assert sorted(s.score for s in kept) == sorted(float(scores[i]) for i in leaders)


def test_what_tile_refuses(tiny_pipeline):
    assert check_tiling(None) is None and check_tiling(512) == Tiling(size=512)
    assert check_tiling({"size": 300, "overlap": 0.5}) == Tiling(300, 0.5)
    assert check_tiling(np.int64(300)) == Tiling(size=300)
    for bad, what in [(0, "whole number"), ({"size": 100, "overlap": 1}, "overlap"), ({"sise": 3}, "takes size"),
                      ("big", "tile size"), (100.5, "whole number"), (float("inf"), "whole number"),
                      (float("nan"), "whole number"), ({"size": 100, "whole": "no"}, "True or False")]:
        with pytest.raises(ValueError, match=what):
            check_tiling(bad)
    for task in ("<CAPTION>", "<REGION_TO_CATEGORY>"):
        with pytest.raises(TaskError, match="tile= applies"):
            tiled_task(florence.get_task(task))
    assert tiled_task(florence.get_task("<OCR>")).token == "<OCR_WITH_REGION>"
    image = Image.new("RGB", (200, 100))
    with pytest.raises(TaskError, match="tile= applies"):
        tiny_pipeline(image, "<REGION_TO_SEGMENTATION>", [1, 1, 50, 50], tile=64)


@pytest.fixture(scope="module")
def pipe(trained_folder):
    return florence.pipeline(trained_folder[0], dtype="float32")


@pytest.fixture(scope="module")
def mosaic(trained_folder):
    """Four 64 px training scenes as one 128 px page, and where each lies."""
    samples = trained_folder[1][:4]
    page = Image.new("RGB", (128, 128))
    spots = [(0, 0), (64, 0), (0, 64), (64, 64)]
    for s, (x, y) in zip(samples, spots):
        page.paste(s["image"], (x, y))
    return page, samples, spots


def test_a_tiled_call_is_the_merge_of_its_tiles_read_alone(pipe, mosaic):
    page, _, spots = mosaic
    tiling = Tiling(size=64, overlap=0.0)
    got = pipe(page, "<OD>", tile=dict(size=64, overlap=0.0), batch_size=3, **GEN)["<OD>"]
    task = florence.get_task("<OD>")
    tiles = []
    for w in windows(page.size, tiling):
        out = pipe(page.crop(w), "<OD>", **GEN)["<OD>"]
        tiles.append(([shifted(r, w[0], w[1]) for r in task.regions(out)], w))
    whole = pipe(page, "<OD>", **GEN)["<OD>"]
    tiles.append((task.regions(whole), None))
    same_result(got, task.with_regions(whole, merge(tiles, page.size, tiling)))
    assert [w for _, w in tiles[:4]] == [(x, y, x + 64, y + 64) for x, y in spots]


def test_scores_survive_a_first_tile_without_items(pipe, monkeypatch):
    """A tile without items has no 'scores' key: the merged result still has the other tiles' scores."""
    def batch(chunk, tasks, inputs, *args):  # the first tile (of one batch) reads nothing
        return [{"<OD>": {"bboxes": [], "labels": []}} if k == 0 else
                {"<OD>": {"bboxes": [[1, 1, 20, 20]], "labels": ["cat"], "scores": [0.5]}}
                for k in range(len(chunk))], [image.size for image in chunk]

    monkeypatch.setattr(pipe, "_batch", batch)
    got = pipe(Image.new("RGB", (128, 64)), "<OD>", tile=dict(size=64, overlap=0))["<OD>"]
    assert got == {"bboxes": [[1, 1, 20, 20], [65, 1, 84, 20]], "labels": ["cat", "cat"], "scores": [0.5, 0.5]}


def test_ocr_of_a_tiled_page_reads_lines_across_tiles_in_reading_order(pipe, monkeypatch):
    """<OCR> tiles through <OCR_WITH_REGION>: lines cut by the border join, then the page's lines are
    read top to bottom, left to right, whichever tile read them."""
    lines = {  # per tile (by its left edge), lines in the tile's pixels
        0: [([40, 5, 63, 15], "HELLO WO", 0.9), ([5, 40, 30, 50], "LAST", 0.8)],
        48: [([0, 5, 30, 15], "WORLD", 0.9), ([20, 25, 40, 35], "MIDDLE", 0.7)],
    }

    def batch(chunk, tasks, inputs, *args):
        out = []
        for image in chunk:
            found = lines.get(0 if len(out) == 0 else 48, []) if image.size == (64, 64) else []
            quads = [[x1, y1, x2, y1, x2, y2, x1, y2] for (x1, y1, x2, y2), _, _ in found]
            out.append({"<OCR_WITH_REGION>": {"quad_boxes": quads, "labels": [t for _, t, _ in found],
                                               "scores": [sc for _, _, sc in found]}})
        return out, [image.size for image in chunk]

    monkeypatch.setattr(pipe, "_batch", batch)
    tile = dict(size=64, overlap=0.25)
    assert windows((112, 64), Tiling(64, 0.25)) == [(0, 0, 64, 64), (48, 0, 112, 64)]
    assert pipe(Image.new("RGB", (112, 64)), "<OCR>", tile=tile)["<OCR>"] == "HELLO WORLD MIDDLE LAST"


def test_open_vocabulary_boxes_and_polygons_keep_their_scores(pipe, monkeypatch):
    ovd = "<OPEN_VOCABULARY_DETECTION>"

    def batch(chunk, tasks, inputs, *args):
        out = [{ovd: {"polygons": [[[5, 5, 20, 5, 20, 20]]], "polygons_labels": ["cat"], "scores": [0.3]}},
               {ovd: {"bboxes": [[2, 2, 10, 10]], "bboxes_labels": ["cat"], "scores": [0.9]}},
               {ovd: {"bboxes": [], "bboxes_labels": []}}]
        return out[:len(chunk)], [image.size for image in chunk]

    monkeypatch.setattr(pipe, "_batch", batch)
    got = pipe(Image.new("RGB", (128, 64)), ovd, "cat", tile=dict(size=64, overlap=0))[ovd]
    assert got["bboxes"] == [[66, 2, 74, 10]] and got["polygons"] == [[[5, 5, 20, 5, 20, 20]]]
    assert got["scores"] == [0.9, 0.3]  # boxes first, then polygons, as the keys hold them


def test_tiles_find_each_scenes_objects_where_it_lies(pipe, mosaic):
    """The model learnt its 64 px scenes: read in 64 px tiles, the page's boxes are the scenes' own
    (IoU >= 0.5, same label) at their place, with their scores."""
    from florence.evaluation.functions import box_iou

    page, samples, spots = mosaic

    def found(result):
        hits = total = 0
        for s, (x, y) in zip(samples, spots):
            if s["task"] != "<OD>":
                continue
            for box, label in zip(s["annotation"]["bboxes"], s["annotation"]["labels"]):
                total += 1
                moved = [box[0] + x, box[1] + y, box[2] + x, box[3] + y]
                hits += any(lab == label and box_iou(b, moved) >= 0.5
                            for b, lab in zip(result["bboxes"], result["labels"]))
        return hits, total

    result = pipe(page, "<OD>", tile=64, **GEN)["<OD>"]
    tiled = found(result)
    assert tiled[1] >= 3 and tiled[0] >= tiled[1] - 1, tiled
    assert len(result["scores"]) == len(result["bboxes"])


def test_an_image_no_larger_than_a_tile_is_read_as_without_tiles(pipe, trained_folder):
    scene = trained_folder[1][0]["image"]
    same_result(pipe(scene, "<OD>", tile=64, **GEN), pipe(scene, "<OD>", **GEN))


def test_infer_tiles(pipe, mosaic, trained_folder, tmp_path):
    from florence.cli import main

    mosaic[0].save(tmp_path / "page.png")
    out = tmp_path / "r.jsonl"
    args = ["infer", str(tmp_path / "page.png"), "--model", str(trained_folder[0]), "--task", "<OD>", "--out", str(out),
            "--max-new-tokens", "40", "--num-beams", "1", "--dtype", "float32", "--tile", "64", "--tile-overlap", "0"]
    assert main(args) == 0
    tiled = pipe(mosaic[0], "<OD>", tile=dict(size=64, overlap=0), **GEN)["<OD>"]
    assert json.loads(out.read_text())["result"] == tiled
    with pytest.raises(SystemExit, match="tile= applies"):
        main([*args[:5], "<CAPTION>", *args[6:]])
    with pytest.raises(SystemExit, match="overlap"):
        main([*args[:-1], "1.5"])
    with pytest.raises(SystemExit, match="needs --tile"):
        main([a for a in args if a not in ("--tile", "64")])
