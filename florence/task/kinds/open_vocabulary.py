"""Boxes or polygons for a named thing: ``{'bboxes', 'bboxes_labels', 'polygons', 'polygons_labels'}``."""
from __future__ import annotations

from ...parsing import parse_boxes, parse_polygons
from ..base import POLYGON, Grammar, Shape, Task, TaskError
from .boxes import BoxTask
from .common import random_phrase, random_box, random_polygon, with_scores, put_regions, region_list
from .polygons import PolygonTask


class OpenVocabularyTask(Task):
    """Boxes or polygons with labels: ``{'bboxes', 'bboxes_labels', 'polygons',
    'polygons_labels'}``. Text containing ``<poly>`` is read as polygons, otherwise as boxes, so
    one target holds one of the two."""
    output_kind = "open_vocabulary"
    output_keys = ("bboxes", "bboxes_labels", "polygons", "polygons_labels")
    region_kinds = ("box", "polygon")
    region_keys = {"box": ("bboxes", "bboxes_labels"), "polygon": ("polygons", "polygons_labels")}
    grammar = Grammar(f"(T+(L{{4}})+)*E|(T+P{POLYGON}Q)*E", boxes=True)  # boxes or polygons, not both

    def regions(self, output) -> list[Shape]:
        """The boxes, or the polygons (an output holds one of the two; both if malformed)."""
        boxes = region_list(output, "box", *self.region_keys["box"])
        polygons = region_list(output, "polygon", *self.region_keys["polygon"])
        if boxes and polygons:  # malformed: whose scores would they be
            for region in boxes + polygons:
                region.score = None
        return boxes + polygons

    def with_regions(self, output, regions):
        return put_regions(output, regions, self.region_keys)
    _boxes = BoxTask("<BOXES>")
    _polygons = type("_LabelledPolygons", (PolygonTask,), {"labelled": True})("<POLYGONS>")

    def encode_target(self, annotation, image_size) -> str:
        if not isinstance(annotation, dict):
            raise TaskError(f"{self.token}: annotation must be a dict, got {type(annotation).__name__}")
        has_boxes, has_polys = bool(annotation.get("bboxes")), bool(annotation.get("polygons"))
        if has_boxes and has_polys:
            raise TaskError(f"{self.token}: a target holds boxes or polygons, not both")
        if has_polys:
            return self._polygons.encode_target(
                {"polygons": annotation["polygons"], "labels": annotation.get("polygons_labels")}, image_size)
        return self._boxes.encode_target(
            {"bboxes": annotation.get("bboxes", []), "labels": annotation.get("bboxes_labels")}, image_size)

    def decode_output(self, text, image_size, scores=None) -> dict:
        out = {"bboxes": [], "bboxes_labels": [], "polygons": [], "polygons_labels": []}
        if "<poly>" in text:
            items = parse_polygons(text, image_size, scores, labelled=True)
            out.update(polygons=[it.coords for it in items], polygons_labels=[it.label for it in items])
        else:
            items = parse_boxes(text, image_size, scores, labelled=True)
            out.update(bboxes=[it.coords[0] for it in items], bboxes_labels=[it.label for it in items])
        return with_scores(out, items)

    def example(self, rng, image_size):
        label = random_phrase(rng)
        if rng.random() < 0.5:
            n = rng.randint(1, 3)
            return label, {"bboxes": [random_box(rng, image_size) for _ in range(n)], "bboxes_labels": [label] * n,
                           "polygons": [], "polygons_labels": []}
        return label, {"bboxes": [], "bboxes_labels": [], "polygons": [[random_polygon(rng, image_size, 6)]],
                       "polygons_labels": [label]}
