"""The built-in metric functions, registered (``florence_register_metrics``) under the names tasks
list in ``task.metrics``.

Each takes ``samples``: dicts with ``task``, ``pred`` (the decoded output), ``gt`` (the annotation,
same format), ``image_size`` (w, h) and ``text_input``, and returns ``{name: value}``. Malformed
predictions (missing keys, NaN, degenerate shapes) count as wrong, never raise. Reference
implementations: pycocotools (COCO bbox AP, polygon rasterisation), pycocoevalcap (BLEU, CIDEr),
rapidfuzz (edit distances).
"""
from __future__ import annotations

import contextlib
import io
import math
import re
from collections import Counter

import numpy as np

from ..plugins import hookimpl
from .vqa_official import ARTICLES, CONTRACTIONS, NUMBERS, PUNCTUATION

__all__ = ["METRIC_FUNCTIONS", "box_iou", "box_precision_recall", "ptb_tokenize"]


# ---- helpers --------------------------------------------------------------------------------------
def _finite(values, n=None) -> list[float] | None:
    try:
        v = [float(x) for x in values]
    except (TypeError, ValueError):
        return None
    if (n is not None and len(v) != n) or not all(math.isfinite(x) for x in v):
        return None
    return v


def box_iou(a, b) -> float:
    """IoU of two [x1, y1, x2, y2] boxes (continuous coordinates; degenerate boxes give 0)."""
    a, b = _finite(a, 4), _finite(b, 4)
    if a is None or b is None:
        return 0.0
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    area = lambda r: max(0.0, r[2] - r[0]) * max(0.0, r[3] - r[1])  # noqa: E731
    union = area(a) + area(b) - inter
    return inter / union if union > 0 else 0.0


def _items(value, coords="bboxes", labels=("labels", "bboxes_labels")) -> list[tuple]:
    """(coords, label, score) triples from an output dict; anything malformed is skipped."""
    if not isinstance(value, dict):
        return []
    boxes = value.get(coords) or []
    names = next((value[k] for k in labels if value.get(k) is not None), [""] * len(boxes))
    scores = value.get("scores") or [1.0] * len(boxes)
    out = []
    for i, box in enumerate(boxes):
        label = names[i] if i < len(names) else ""
        score = scores[i] if i < len(scores) else 1.0
        out.append((box, str(label), float(score) if _finite([score]) else 0.0))
    return out


def _text(value) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):  # OCR with regions: the lines in order
        return " ".join(str(t) for t in value.get("labels", []))
    return ""


# ---- detection ----------------------------------------------------------------------------------
def coco_bbox_map(samples) -> dict:
    """COCO box AP with pycocotools' COCOeval: one image per sample, categories = the ground-truth
    label strings, detections scored with the per-box ``scores`` (1.0 without)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    cats = sorted({label for s in samples for _, label, _ in _items(s["gt"])})
    cat_id = {c: i + 1 for i, c in enumerate(cats)}
    images, anns, dets = [], [], []
    for img_id, s in enumerate(samples, 1):
        w, h = s["image_size"]
        images.append({"id": img_id, "width": w, "height": h})
        for box, label, _ in _items(s["gt"]):
            b = _finite(box, 4)
            if b is not None:
                anns.append({"id": len(anns) + 1, "image_id": img_id, "category_id": cat_id[label], "iscrowd": 0,
                             "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "area": (b[2] - b[0]) * (b[3] - b[1])})
        for box, label, score in _items(s["pred"]):
            b = _finite(box, 4)
            if b is not None and label in cat_id:
                dets.append({"image_id": img_id, "category_id": cat_id[label], "score": score,
                             "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]]})
    zero = {"bbox_mAP": 0.0, "bbox_mAP_50": 0.0, "bbox_mAP_75": 0.0}
    if not anns or not dets:
        return zero
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": i, "name": c} for c, i in cat_id.items()]}
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.evaluate(), ev.accumulate(), ev.summarize()
    return {"bbox_mAP": max(0.0, ev.stats[0]), "bbox_mAP_50": max(0.0, ev.stats[1]), "bbox_mAP_75": max(0.0, ev.stats[2])}


def box_precision_recall(samples, iou: float = 0.5) -> dict:
    """Precision and recall of labelled boxes (the data engine's label quality): per image, predicted
    boxes in order of score are matched to a ground-truth box of the same label not matched yet with
    IoU >= ``iou``; ``boxes``: the predicted boxes counted."""
    tp = n_pred = n_gt = 0
    for s in samples:
        gt = [(b, label) for b, label, _ in _items(s["gt"])]
        used = [False] * len(gt)
        pred = sorted(_items(s["pred"]), key=lambda t: -t[2])
        n_pred, n_gt = n_pred + len(pred), n_gt + len(gt)
        for box, label, _ in pred:
            best, best_iou = None, iou
            for j, (g, g_label) in enumerate(gt):
                if not used[j] and g_label == label and box_iou(box, g) >= best_iou:
                    best, best_iou = j, box_iou(box, g)
            if best is not None:
                used[best], tp = True, tp + 1
    return {f"precision@{iou:g}": tp / n_pred if n_pred else 0.0, f"recall@{iou:g}": tp / n_gt if n_gt else 0.0,
            "boxes": n_pred}


def refexp_acc(samples) -> dict:
    """Referring expression comprehension: the first predicted box has IoU >= 0.5 with the first
    ground-truth box."""
    hits = 0
    for s in samples:
        pred, gt = _items(s["pred"]), _items(s["gt"])
        hits += bool(pred and gt and box_iou(pred[0][0], gt[0][0]) >= 0.5)
    return {"Acc@0.5": hits / len(samples) if samples else 0.0}


def grounding_recall(samples) -> dict:
    """Phrase grounding recall@1: per ground-truth phrase, the first predicted box with that phrase
    hits if its IoU >= 0.5 with a ground-truth box of the phrase."""
    hits = total = 0
    for s in samples:
        gt = {}
        for box, label, _ in _items(s["gt"]):
            gt.setdefault(label.strip().lower(), []).append(box)
        first = {}
        for box, label, _ in _items(s["pred"]):
            first.setdefault(label.strip().lower(), box)
        for phrase, boxes in gt.items():
            total += 1
            hits += phrase in first and any(box_iou(first[phrase], b) >= 0.5 for b in boxes)
    return {"Recall@1": hits / total if total else 0.0}


def proposal_recall(samples) -> dict:
    """Fraction of ground-truth boxes covered by some predicted box at IoU >= 0.5."""
    hits = total = 0
    for s in samples:
        pred = [b for b, _, _ in _items(s["pred"])]
        for box, _, _ in _items(s["gt"]):
            total += 1
            hits += any(box_iou(p, box) >= 0.5 for p in pred)
    return {"AR@0.5": hits / total if total else 0.0}


# ---- segmentation -------------------------------------------------------------------------------
def _mask(value, size):
    from pycocotools import mask as mask_utils

    w, h = size
    parts = []
    for inst, _, _ in _items(value, "polygons", ("labels", "polygons_labels")):
        for part in inst if isinstance(inst, (list, tuple)) else []:
            p = _finite(part)
            if p is not None and len(p) >= 6 and len(p) % 2 == 0:
                parts.append(p)
    if not parts:
        return np.zeros((h, w), dtype=bool)
    rles = mask_utils.frPyObjects(parts, h, w)
    return mask_utils.decode(mask_utils.merge(rles)).astype(bool)


def refseg_miou(samples) -> dict:
    """Referring segmentation: polygons rasterised with pycocotools; mean per-sample IoU (mIoU) and
    cumulative intersection over cumulative union (oIoU). An empty prediction for an empty ground
    truth counts as IoU 1."""
    ious, inter_sum, union_sum = [], 0, 0
    for s in samples:
        p, g = _mask(s["pred"], s["image_size"]), _mask(s["gt"], s["image_size"])
        inter, union = int((p & g).sum()), int((p | g).sum())
        ious.append(inter / union if union else 1.0)
        inter_sum, union_sum = inter_sum + inter, union_sum + union
    return {"mIoU": float(np.mean(ious)) if ious else 0.0, "oIoU": inter_sum / union_sum if union_sum else 0.0}


# ---- text ---------------------------------------------------------------------------------------
_PTB_PUNCT = {"''", "'", "``", "`", "-lrb-", "-rrb-", "-lcb-", "-rcb-", ".", "?", "!", ",", ":", "-", "--", "...", ";"}
_PTB_TOKEN = re.compile(r"\.\.\.|--|(?i:n't|'s|'re|'ve|'ll|'d|'m)\b|\w+(?:[-.]\w+)*|[^\w\s]")


def ptb_tokenize(text: str) -> str:
    """Lower-cased tokens joined by spaces, punctuation dropped: what pycocoevalcap's (Java)
    PTBTokenizer produces for ordinary English captions (checked against it in the tests). Not
    replicated: Stanford's abbreviation heuristics for a single letter before a period ("a." is
    sometimes kept as one token), so a caption ending in a one-letter word may differ."""
    text = re.sub(r"(\w)(n't)\b", r"\1 \2", text.replace("\n", " "), flags=re.IGNORECASE)
    tokens = (t.lower() for t in _PTB_TOKEN.findall(text))
    return " ".join(t for t in tokens if t not in _PTB_PUNCT)


def _caption_sets(samples):
    res, gts = {}, {}
    for i, s in enumerate(samples):
        refs = s["gt"] if isinstance(s["gt"], (list, tuple)) else [s["gt"]]
        gts[i] = [ptb_tokenize(str(r)) for r in refs]
        res[i] = [ptb_tokenize(_text(s["pred"]))]
    return gts, res


def bleu4(samples) -> dict:
    """BLEU-4 of pycocoevalcap (corpus level, 'closest' reference length)."""
    from pycocoevalcap.bleu.bleu import Bleu

    if not samples:
        return {"BLEU-4": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):
        score, _ = Bleu(4).compute_score(*_caption_sets(samples), verbose=0)
    return {"BLEU-4": float(score[3])}


def cider(samples) -> dict:
    """CIDEr-D of pycocoevalcap (document frequencies from the evaluated references)."""
    from pycocoevalcap.cider.cider import Cider

    if not samples:
        return {"CIDEr": 0.0}
    score, _ = Cider().compute_score(*_caption_sets(samples))
    return {"CIDEr": float(score)}


def ocr_word_f1(samples) -> dict:
    """Word F1 over the dataset: multiset overlap of whitespace-split words (case-sensitive)."""
    overlap = n_pred = n_gt = 0
    for s in samples:
        p, g = Counter(_text(s["pred"]).split()), Counter(_text(s["gt"]).split())
        overlap += sum((p & g).values())
        n_pred, n_gt = n_pred + sum(p.values()), n_gt + sum(g.values())
    precision = overlap / n_pred if n_pred else 0.0
    recall = overlap / n_gt if n_gt else 0.0
    return {"word_F1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0}


def ocr_cer(samples) -> dict:
    """Character error rate over the dataset: total edit distance / total ground-truth characters."""
    from rapidfuzz.distance import Levenshtein

    edits = sum(Levenshtein.distance(_text(s["gt"]), _text(s["pred"])) for s in samples)
    chars = sum(len(_text(s["gt"])) for s in samples)
    return {"CER": edits / chars if chars else 0.0}


def _quad_box(q):
    q = _finite(q, 8)
    return None if q is None else [min(q[0::2]), min(q[1::2]), max(q[0::2]), max(q[1::2])]


def ocr_region_f1(samples) -> dict:
    """OCR with regions: a predicted line matches an unmatched ground-truth line whose quad's box
    has IoU >= 0.5 with it and whose text is equal; F1 over the dataset."""
    matched = n_pred = n_gt = 0
    for s in samples:
        pred = _items(s["pred"], "quad_boxes")
        gt = _items(s["gt"], "quad_boxes")
        used = set()
        for q, text, _ in pred:
            for j, (gq, gtext, _) in enumerate(gt):
                if j not in used and text == gtext and box_iou(_quad_box(q) or [0] * 4, _quad_box(gq) or [0] * 4) >= 0.5:
                    used.add(j)
                    break
        matched, n_pred, n_gt = matched + len(used), n_pred + len(pred), n_gt + len(gt)
    p, r = (matched / n_pred if n_pred else 0.0), (matched / n_gt if n_gt else 0.0)
    return {"region_F1": 2 * p * r / (p + r) if p + r else 0.0}


def _norm(text) -> str:
    return " ".join(str(text).strip().lower().split())


def accuracy(samples) -> dict:
    """Exact match after lower-casing and collapsing whitespace."""
    hits = sum(_norm(_text(s["pred"])) == _norm(_text(s["gt"])) for s in samples)
    return {"accuracy": hits / len(samples) if samples else 0.0}


def anls(samples, threshold: float = 0.5) -> dict:
    """Average Normalized Levenshtein Similarity (DocVQA): per question the best over the accepted
    answers of 1 - distance / max length, 0 below ``threshold`` similarity."""
    from rapidfuzz.distance import Levenshtein

    total = 0.0
    for s in samples:
        pred = _norm(_text(s["pred"]))
        answers = s["gt"] if isinstance(s["gt"], (list, tuple)) else [s["gt"]]
        best = 0.0
        for a in answers:
            a = _norm(a)
            length = max(len(a), len(pred))
            nl = Levenshtein.distance(a, pred) / length if length else 0.0
            best = max(best, 1 - nl if nl < threshold else 0.0)
        total += best
    return {"ANLS": total / len(samples) if samples else 0.0}


# VQA answer normalisation: the official evaluation's rules over its own tables (vqa_official.py)
_PERIOD = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA_NUM = re.compile(r"(\d)(,)(\d)")


def _vqa_clean(answer) -> str:
    return str(answer).replace("\n", " ").replace("\t", " ").strip()


def _vqa_normalize(answer: str) -> str:
    """The official evaluation's processPunctuation + processDigitArticle, quirks included: each
    mark's rule is decided on the answer as given (not as already edited), and at most 32 periods
    are stripped (its ``re.sub`` receives ``re.UNICODE`` as the count)."""
    given = _vqa_clean(answer)
    a = given
    numbers_with_commas = re.search(_COMMA_NUM, given) is not None
    for p in PUNCTUATION:
        if (p + " " in given or " " + p in given) or numbers_with_commas:
            a = a.replace(p, "")
        else:
            a = a.replace(p, " ")
    a = _PERIOD.sub("", a, count=32)
    words = []
    for w in a.lower().split():
        w = NUMBERS.get(w, w)
        if w not in ARTICLES:
            words.append(CONTRACTIONS.get(w, w))
    return " ".join(words)


def vqa_accuracy(samples) -> dict:
    """VQAv2 accuracy: answers normalised as the official evaluation does; per question, the mean
    over the leave-one-out subsets of the human answers of min(1, matches / 3)."""
    total = 0.0
    for s in samples:
        answers = s["gt"] if isinstance(s["gt"], (list, tuple)) else [s["gt"]]
        pred = _vqa_clean(_text(s["pred"]))
        answers = [_vqa_clean(a) for a in answers]
        if len(set(answers)) > 1:  # the official script normalises only when annotators disagree
            answers, pred = [_vqa_normalize(a) for a in answers], _vqa_normalize(pred)
        if not answers:
            continue
        if len(answers) == 1:
            total += float(pred == answers[0])
            continue
        accs = [min(1.0, sum(a == pred for k, a in enumerate(answers) if k != i) / 3) for i in range(len(answers))]
        total += sum(accs) / len(accs)
    return {"vqa_accuracy": total / len(samples) if samples else 0.0}


METRIC_FUNCTIONS = {
    "coco_bbox_map": coco_bbox_map, "refexp_acc@0.5": refexp_acc, "grounding_recall@1": grounding_recall,
    "proposal_recall": proposal_recall, "refseg_miou": refseg_miou, "bleu4": bleu4, "cider": cider,
    "ocr_word_f1": ocr_word_f1, "ocr_cer": ocr_cer, "ocr_region_f1": ocr_region_f1, "accuracy": accuracy,
    "anls": anls, "vqa_accuracy": vqa_accuracy,
}


@hookimpl
def florence_register_metrics():
    return dict(METRIC_FUNCTIONS)
