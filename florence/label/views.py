"""Several annotators from one model: test-time augmentation (the data engine's cheapest way to get
annotators that disagree usefully). A :class:`View` mirrors and/or rescales each image; an annotator
reading through it (``dict(model=..., view="hflip")`` in a data-engine config or ``florence.label``'s
``annotators``) answers in the original image's pixels, so :class:`~florence.label.Consensus` merges
the views' labels like any other annotators'.

>>> View.parse("hflip+scale:0.75")
View(flip=True, scale=0.75)
>>> View(flip=True).back(Shape("box", [10, 20, 30, 40]), (100, 50)).coords
[70.0, 20.0, 90.0, 40.0]
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from PIL import Image

from ..task import Shape, get_task

__all__ = ["View", "Augmented"]


@dataclass(frozen=True)
class View:
    """How an annotator sees each image: mirrored left-right (``flip``), then resized by ``scale``."""
    flip: bool = False
    scale: float = 1.0

    def __post_init__(self):
        if not isinstance(self.scale, (int, float)) or not 0.1 <= self.scale <= 4:
            raise ValueError(f"a view's scale must be a number in [0.1, 4], got {self.scale!r}")

    @classmethod
    def parse(cls, spec) -> "View":
        """A View from ``"identity"``, ``"hflip"``, ``"scale:0.75"``, ``"hflip+scale:0.75"``, a dict of
        its fields or a View; a ValueError naming the bad part otherwise."""
        if isinstance(spec, View):
            return spec
        if isinstance(spec, dict):
            return cls(**spec)
        if not isinstance(spec, str):
            raise ValueError(f"a view is a string like 'hflip+scale:0.75', got {spec!r:.100}")
        flip, scale = False, 1.0
        for part in spec.replace(" ", "").split("+"):
            if part == "hflip":
                flip = True
            elif part.startswith("scale:"):
                try:
                    scale = float(part[len("scale:"):])
                except ValueError:
                    raise ValueError(f"view {spec!r}: scale must be a number, e.g. scale:0.75") from None
            elif part != "identity":
                raise ValueError(f"view {spec!r}: unknown part {part!r} (identity, hflip, scale:S)")
        return cls(flip, scale)

    def __str__(self) -> str:
        parts = (["hflip"] if self.flip else []) + ([f"scale:{self.scale:g}"] if self.scale != 1 else [])
        return "+".join(parts) or "identity"

    def size(self, image_size) -> tuple[int, int]:
        """The view's (width, height) of an image of ``image_size``."""
        return max(1, round(image_size[0] * self.scale)), max(1, round(image_size[1] * self.scale))

    def apply(self, image: Image.Image) -> Image.Image:
        """The image as the annotator sees it."""
        if self.flip:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if self.scale != 1:
            image = image.resize(self.size(image.size), Image.Resampling.BICUBIC)
        return image

    def back(self, shape: Shape, image_size) -> Shape:
        """``shape``, read on the view of an image of ``image_size``, in the image's own pixels."""
        w, h = image_size
        vw, vh = self.size(image_size)
        sx, sy = w / vw, h / vh

        def flat(xy):
            xs = [x * sx for x in xy[0::2]]
            xs = [w - x for x in xs] if self.flip else xs
            return [v for x, y in zip(xs, xy[1::2]) for v in (x, y * sy)]

        if shape.kind == "polygon":
            coords = [flat(part) for part in shape.coords]
        else:
            coords = flat(shape.coords)
            if self.flip and shape.kind == "box":  # x1 <= x2 again
                coords = [coords[2], coords[1], coords[0], coords[3]]
            elif self.flip and shape.kind == "quad":  # top-left first, clockwise, again
                coords = coords[2:4] + coords[0:2] + coords[6:8] + coords[4:6]
        return dataclasses.replace(shape, coords=coords)


class Augmented:
    """An annotator reading every image through ``view``: ``annotate(images, task)`` runs on the
    viewed images and its regions come back in the images' pixels (text outputs as they are, an
    output ``{"error": ...}`` unchanged)."""

    def __init__(self, annotate, view):
        self.annotate, self.view = annotate, View.parse(view)

    def __call__(self, images, task):
        outputs = self.annotate([self.view.apply(image) for image in images], task)
        spec = get_task(task)
        return [o if not isinstance(o, dict) or "error" in o or not spec.region_kinds else
                spec.with_regions(o, [self.view.back(r, image.size) for r in spec.regions(o)])
                for o, image in zip(outputs, images)]
