"""Training-only heads on the image tokens, for towers trained from scratch: pixel reconstruction
and dense objects. Neither is part of the Florence-2 model; both are dropped on export."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .preprocessor import call_named

__all__ = ["PixelReconstructionHead", "DenseObjectHead"]


def _grid(n: int, height: int, width: int) -> tuple[int, int]:
    """(h, w) of the ``n`` grid tokens of a ``height x width`` image (the tower's stride is square)."""
    stride = math.sqrt(height * width / n)
    h, w = round(height / stride), round(width / stride)
    if h * w != n:
        raise ValueError(f"cannot place {n} image tokens on a grid for a {height}x{width} image")
    return h, w


class DenseObjectHead(nn.Module):
    """Auxiliary loss for training from scratch: every grid token of the image (as the encoder sees
    it) classifies what lies at its cell centre (background or one of ``classes``) and, inside an
    object, regresses that object's box (normalised x1, y1, x2, y2; L1). Targets come from each
    sample's ``objects`` (``{"bboxes": [[x1, y1, x2, y2], ...], "labels": [...]}`` in original-image
    pixels); samples without them do not count. An object also owns the cell holding its centre, so
    no object is too small to have a token; where objects overlap the smaller one wins.

    Why: the text loss teaches location tokens slowly (a few dozen examples per bin in a short
    run) and the random tower's features do not say where things are; asking each token, by a
    *linear* read-out, for the class and box under it makes the encoder's tokens carry both, so the
    decoder only has to find the right token and copy a number (with ``location_init="coordinate"``
    a coordinate is a linear direction of the location embeddings). Like the pixel loss it is not
    part of the Florence-2 model and is dropped on export.

    Args:
        dim: token width.
        classes: label names, or ``"module:function"`` returning them.
        weight: weight of the class loss; box_weight: weight of the box L1 loss.
    """

    def __init__(self, dim: int, classes, weight: float = 1.0, box_weight: float = 5.0):
        super().__init__()
        self.classes = list(call_named(classes) if isinstance(classes, str) else classes)
        if not self.classes or weight <= 0 or box_weight < 0:
            raise ValueError(f"objects head needs classes, weight > 0 and box_weight >= 0; got {len(self.classes)} "
                             f"classes, weight={weight}, box_weight={box_weight}")
        self.index = {c: i + 1 for i, c in enumerate(self.classes)}  # 0 = background
        self.weight, self.box_weight = float(weight), float(box_weight)
        self.cls = nn.Linear(dim, len(self.classes) + 1)
        self.box = nn.Linear(dim, 4)

    def targets(self, objects, image_size, h: int, w: int):
        """(h*w,) class ids (-100: no objects given) and (h*w, 4) normalised boxes of one sample."""
        cls = torch.full((h * w,), -100 if objects is None else 0, dtype=torch.long)
        box = torch.zeros(h * w, 4)
        if not objects:
            return cls, box
        bboxes, labels = objects.get("bboxes"), objects.get("labels")
        if bboxes is None or labels is None or len(bboxes) != len(labels) or any(len(b) != 4 for b in bboxes):
            raise ValueError("objects must be {'bboxes': [[x1, y1, x2, y2], ...], 'labels': [...]} with one label "
                             f"per box; got {objects!r}")
        W, H = image_size
        cx = (torch.arange(w, dtype=torch.float32) + 0.5) * W / w  # cell centres, original pixels
        cy = (torch.arange(h, dtype=torch.float32) + 0.5) * H / h
        for i in sorted(range(len(bboxes)), key=lambda i: -_area(bboxes[i])):  # large first: small ones overwrite
            label = labels[i]
            if label not in self.index:
                raise ValueError(f"objects label {label!r} is not one of the head's classes {self.classes}")
            x1, y1, x2, y2 = (float(v) for v in bboxes[i])
            inside = ((cy >= y1) & (cy <= y2))[:, None] & ((cx >= x1) & (cx <= x2))[None]  # (h, w)
            r = min(max(int((y1 + y2) / 2 / H * h), 0), h - 1)
            c = min(max(int((x1 + x2) / 2 / W * w), 0), w - 1)
            inside[r, c] = True
            inside = inside.flatten()
            cls[inside] = self.index[label]
            box[inside] = torch.tensor([x1 / W, y1 / H, x2 / W, y2 / H])
        return cls, box

    def forward(self, pixel_values: torch.Tensor, image_embeds: torch.Tensor, objects: list) -> dict:
        """``loss_objects`` and ``loss_boxes`` of a batch; ``objects``: per image, (its objects or None,
        its (width, height) in pixels); ``image_embeds``: the projected image tokens, pooled one first."""
        h, w = _grid(image_embeds.shape[1] - 1, *pixel_values.shape[-2:])
        targets = [self.targets(o, size, h, w) for o, size in objects]
        cls = torch.stack([t[0] for t in targets]).to(image_embeds.device)  # (B, h*w)
        box = torch.stack([t[1] for t in targets]).to(image_embeds.device)  # (B, h*w, 4)
        # (B, h*w, D); the pooled token has no cell. In the head's dtype (float32 under autocast,
        # bf16 when DeepSpeed holds the model in bf16); the losses in float32
        tokens = image_embeds[:, 1:].to(self.cls.weight.dtype)
        if not (cls >= 0).any():  # both heads stay in the graph: DDP expects a gradient for every parameter
            zero = (self.cls(tokens).float().sum() + self.box(tokens).float().sum()) * 0
            return {"loss_objects": zero, "loss_boxes": zero}
        loss_cls = F.cross_entropy(self.cls(tokens).float().flatten(0, 1), cls.flatten(), ignore_index=-100)
        fg = cls > 0
        pred = self.box(tokens).float()[fg]
        loss_box = F.l1_loss(pred, box[fg]) if fg.any() else pred.sum() * 0
        return {"loss_objects": self.weight * loss_cls, "loss_boxes": self.box_weight * loss_box}


def _area(box) -> float:
    return max(0.0, float(box[2]) - float(box[0])) * max(0.0, float(box[3]) - float(box[1]))


class PixelReconstructionHead(nn.Module):
    """Auxiliary loss for training from scratch: every grid token of the image (after the projector,
    as the encoder sees it) predicts its own image cell at ``cell x cell`` resolution; the loss is the
    mean squared error on the normalised pixels, times ``weight``.

    Why: with a randomly initialised DaViT and only the text loss, the decoder learns the language
    prior in the first ~100 steps while the tower's random features (progressively scrambled by
    each random stage) are not yet readable; the text gradient then pushes the image tokens towards
    a constant and the model never uses the image (measured: held-out caption loss identical with
    the images swapped). Asking the tokens to keep their own pixels keeps them local and
    informative until the decoder learns to read them. The head is not part of the Florence-2
    model and is dropped on export; fine-tuning a pretrained checkpoint does not need it."""

    def __init__(self, dim: int, cell: int = 8, weight: float = 1.0):
        super().__init__()
        if cell < 1 or weight <= 0:
            raise ValueError(f"reconstruction needs cell >= 1 and weight > 0, got cell={cell}, weight={weight}")
        self.cell, self.weight = int(cell), float(weight)
        self.proj = nn.Linear(dim, 3 * self.cell ** 2)

    def forward(self, pixel_values: torch.Tensor, image_embeds: torch.Tensor) -> torch.Tensor:
        """The weighted reconstruction loss of a batch (``image_embeds``: the projected image tokens,
        pooled one first)."""
        B, _, H, W = pixel_values.shape
        h, w = _grid(image_embeds.shape[1] - 1, H, W)  # the first token is the pooled one
        target = F.adaptive_avg_pool2d(pixel_values.float(), (h * self.cell, w * self.cell))
        target = F.unfold(target, self.cell, stride=self.cell).transpose(1, 2)  # (B, h*w, 3*cell*cell)
        tokens = image_embeds[:, 1:].to(self.proj.weight.dtype)  # float32 under autocast; bf16 in a bf16 model
        return self.weight * F.mse_loss(self.proj(tokens).float(), target)
