"""How Florence-2 runs fast on CPUs, apart from what it is.

:func:`apply` turns a plain :class:`~florence.models.Florence2ForConditionalGeneration` (torch, timm
and transformers modules only) into the accelerated one, in place: the same parameters, state dict,
``isinstance`` relations and results (fp32: the same token ids, tested in tests/models/test_accel.py), computed by

- ``linear.py``: oneDNN linears (``FastLinear``) with their backward, and packed bf16 weights;
- ``davit.py``: the vision tower run channels-last (``davit_features``), which
  :meth:`florence.models.tower.DaViT.features` calls once :func:`apply` sets it as the tower's
  ``fast_features``;
- ``decoding.py``: BART's lean decoding step and a cross-attention cache shared by beams (``DecodingBart``);
- ``attention.py``: the attention function those read (``attn_implementation="florence_cpu"``);
- ``processors.py``: cheaper equivalents of transformers' logits processors.

:func:`remove` gives the plain model back (for ``torch.export``, ONNX, a GPU or a new backend).
``florence.pipeline(..., accelerate=...)`` and the engine's ``Florence2Model(accelerate=...)`` call
:func:`apply`; their default ``"auto"`` accelerates where it is faster: on CPU.

Example::

    >>> from florence import accel
    >>> model = accel.apply(Florence2ForConditionalGeneration(config))   # on CPU: accelerated
    >>> accel.is_applied(model)
    True
    >>> torch.export.export(accel.remove(model).eval(), args)            # plain again
"""
from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["apply", "remove", "is_applied", "wanted"]


def wanted(device) -> bool:
    """Whether acceleration is faster on ``device`` (a device or its name): on CPU only."""
    return torch.device(device).type == "cpu"


def apply(model: nn.Module, enabled: bool | str = "auto", device=None) -> nn.Module:
    """Accelerate ``model`` in place and return it. ``enabled``: ``True``, ``False`` (make sure it is
    plain) or ``"auto"`` (where :func:`wanted` says so for ``device``, default the model's own).
    Idempotent; parameters, buffers, hooks and LoRA wrappers stay as they are: the accelerated
    modules replace the plain ones in their parents (:mod:`florence.accel.replace`) and hold their state."""
    from timm.models.davit import DaVit
    from transformers import BartForConditionalGeneration

    from .attention import register_attention
    from .davit import davit_features
    from .decoding import DecodingBart
    from .linear import use_fast_linear_
    from .replace import replace_modules

    if enabled not in (True, False, "auto"):
        raise ValueError(f"accelerate must be True, False or 'auto', got {enabled!r}")
    if enabled == "auto":
        enabled = wanted(device if device is not None else _device(model))
    if not enabled:
        return remove(model)
    for m in model.modules():
        if type(m) is DaVit:
            m.fast_features = davit_features  # the tower's own switch (florence.models.tower.DaViT.features)
    register_attention()
    replace_modules(model, {BartForConditionalGeneration: DecodingBart.from_bart})
    use_fast_linear_(model)
    return model


def remove(model: nn.Module) -> nn.Module:
    """Undo :func:`apply` in place: timm's DaViT path, transformers' BART and ``nn.Linear`` again."""
    import sys

    if __name__ + ".linear" not in sys.modules:  # never applied in this process: nothing to undo
        return model
    from timm.models.davit import DaVit

    from .decoding import DecodingBart
    from .linear import use_plain_linear_
    from .replace import replace_modules

    for m in model.modules():
        if type(m) is DaVit:
            m.__dict__.pop("fast_features", None)
    replace_modules(model, {DecodingBart: DecodingBart.to_bart})
    use_plain_linear_(model)
    return model


def is_applied(model: nn.Module) -> bool:
    """Whether any module of ``model`` is one of this package's, or a tower runs this package's path."""
    return any(type(m).__module__.startswith(__name__ + ".") or "fast_features" in m.__dict__
               for m in model.modules())


def _device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")
