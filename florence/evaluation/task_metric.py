"""One mmengine metric for every task: samples are grouped by task and each group is scored with
the metric functions its task names (``task.metrics``, registered by plugins)."""
from __future__ import annotations

import math
from collections import defaultdict

from mmengine.evaluator import BaseMetric

from ..registry import METRICS
from .functions import _finite
from ..task import get_metric, get_task

__all__ = ["TaskMetric", "format_table", "is_empty", "is_malformed"]


def is_empty(value) -> bool:
    """An output with nothing in it: an empty string, or a dict whose lists are all empty."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, dict):
        return all(not v for k, v in value.items() if k != "scores")
    return not value


# how many numbers an entry of each region kind holds ("polygon": parts of an even count >= 2: the
# published parser keeps a part of one or two points, which covers no area); other kinds: any count
_NUMBERS = {"box": 4, "quad": 8, "polygon": "polygon"}
# the built-in kinds' coordinate keys: (region kind, the keys their labels may be under)
_KEYS = {"bboxes": ("box", ("labels", "bboxes_labels")), "quad_boxes": ("quad", ("labels", "quad_boxes_labels")),
         "polygons": ("polygon", ("labels", "polygons_labels"))}


def _numbers(values, count=None) -> bool:
    """Finite numbers: ``count`` of them, an even count >= 2 for ``"polygon"``, any for None."""
    v = _finite(values)
    if v is None:
        return False
    if count == "polygon":
        return len(v) >= 2 and len(v) % 2 == 0
    return count is None or len(v) == count


def is_malformed(value, task=None) -> bool:
    """An output no parser of ours produces: not text or a dict, coordinates that are not finite
    numbers of the right count (4 per box, 8 per quad, an even count per polygon part), boxes
    with x2 < x1 or y2 < y1, a label list whose length differs from its coordinate list, or scores
    that are not finite. The metrics score such entries as absent (no credit). The coordinates are
    found under the built-in kinds' keys and, with ``task``, under its ``region_keys`` too (a
    plugin's kind: its coordinates must be finite numbers)."""
    if value is None or isinstance(value, str):
        return False
    if not isinstance(value, dict):
        return True
    keys = dict(_KEYS)
    if task is not None:
        keys.update({coords: (kind, (labels,)) for kind, (coords, labels) in task.region_keys.items()})
    for key, (kind, label_keys) in keys.items():
        count = _NUMBERS.get(kind)
        entries = value.get(key)
        if entries is None:
            continue
        if not isinstance(entries, (list, tuple)):
            return True
        for e in entries:
            parts = e if count == "polygon" and isinstance(e, (list, tuple)) else [e]
            if not parts or not all(_numbers(part, count) for part in parts):
                return True
            if kind == "box" and (float(e[2]) < float(e[0]) or float(e[3]) < float(e[1])):
                return True
        labels = next((value[k] for k in label_keys if value.get(k) is not None), None)
        if labels is not None and len(labels) != len(entries):
            return True
    scores = value.get("scores")
    return scores is not None and not _numbers(scores)


@METRICS.register_module()
class TaskMetric(BaseMetric):
    """Scores predictions of any mix of tasks.

    Each result row is (task, metric, value, samples, invalid) where ``invalid`` counts outputs
    that parsed to nothing although the ground truth is not empty, and malformed outputs
    (:func:`is_malformed`; they get no credit). ``compute_metrics`` returns
    ``{"<task name>/<metric>": value}`` for mmengine's logs; the rows stay in ``self.table``.
    """

    default_prefix = ""

    def __init__(self, collect_device: str = "cpu", prefix: str | None = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.table: list[dict] = []

    def process(self, data_batch, data_samples) -> None:
        for s in data_samples:
            self.results.append(dict(task=s.task, pred=s.pred, gt=s.annotation, image_size=tuple(s.image_size),
                                     text_input=s.text_input, text=s.text))

    def compute_metrics(self, results: list) -> dict:
        groups = defaultdict(list)
        for r in results:
            groups[r["task"]].append(r)
        self.table, out = [], {}
        for token, samples in groups.items():
            task = get_task(token)
            invalid = sum(is_malformed(s["pred"], task) or (is_empty(s["pred"]) and not is_empty(s["gt"]))
                          for s in samples)
            for name in task.metrics or ("none",):  # a task without metrics still shows its counts
                values = get_metric(name)(samples) if task.metrics else {name: math.nan}
                for key, value in values.items():
                    self.table.append(dict(task=token, metric=key, value=float(value), samples=len(samples),
                                           invalid=invalid))
                    out[f"{task.name}/{key}"] = float(value)
        return out


def format_table(rows: list[dict]) -> str:
    """The rows as an aligned text table."""
    header = ("task", "metric", "value", "samples", "invalid")
    cells = [header] + [(r["task"], r["metric"], f"{r['value']:.4f}", str(r["samples"]), str(r["invalid"]))
                        for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    lines = ["  ".join(c[i].ljust(widths[i]) if i < 2 else c[i].rjust(widths[i]) for i in range(len(header)))
             for c in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
