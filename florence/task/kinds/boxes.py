"""Box outputs: ``{'bboxes', 'labels'}`` (+ ``'scores'``)."""
from __future__ import annotations

from ...parsing import parse_boxes
from ..base import QUANTIZER, Grammar, Shape, Task
from .common import checked_pairs, random_phrase, random_box, with_scores, put_regions, region_list


class BoxTask(Task):
    """Output ``{'bboxes': [[x1, y1, x2, y2], ...], 'labels': [...]}`` (+ ``'scores'``).

    ``labelled=False`` (region proposals) emits boxes only and returns empty labels; ``ignore``
    lists labels dropped when parsing (phrase grounding drops pronouns and the like)."""
    output_kind = "boxes"
    output_keys = ("bboxes", "labels")
    region_kinds = ("box",)
    region_keys = {"box": ("bboxes", "labels")}
    labelled: bool = True

    ignore: frozenset = frozenset()

    @property
    def label_locations(self) -> int | None:
        return 4 if self.labelled else None

    @property
    def grammar(self) -> Grammar:
        return Grammar("(T+(L{4})+)*E" if self.labelled else "(L{4})*E", boxes=True)

    def regions(self, output) -> list[Shape]:
        return region_list(output, "box", *self.region_keys["box"])

    def with_regions(self, output, regions):
        return put_regions(output, regions, self.region_keys)

    def encode_target(self, annotation, image_size) -> str:
        pairs = checked_pairs(self.token, annotation, "bboxes", "labels", 4)
        return "".join((label if self.labelled else "") + QUANTIZER.box_tokens(box, image_size)
                       for box, label in pairs)

    def decode_output(self, text, image_size, scores=None) -> dict:
        items = [it for it in parse_boxes(text, image_size, scores, self.labelled) if it.label not in self.ignore]
        return with_scores({"bboxes": [it.coords[0] for it in items], "labels": [it.label for it in items]}, items)

    def example(self, rng, image_size):
        n = rng.randint(1, 5)
        labels = [random_phrase(rng, rng.randint(1, 2)) if self.labelled else "" for _ in range(n)]
        ann = {"bboxes": [random_box(rng, image_size) for _ in range(n)], "labels": labels}
        return (" and ".join(labels) if self.input_kind == "text" else None), ann
