"""Layer-wise learning-rate decay for detectors and segmentors with a Florence-2 DaViT backbone."""
from __future__ import annotations

import torch.nn as nn
from mmengine.logging import MMLogger
from mmengine.optim import DefaultOptimWrapperConstructor

from ..models.config import ConfigError
from .backbone import Florence2DaViT

__all__ = ["LayerDecayOptimWrapperConstructor"]


class LayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """An optimizer whose learning rate shrinks geometrically from the head down to the stem.

    The rule. With ``L = backbone.num_layers`` (the number of DaViT depth units, each a spatial
    and a channel block: 12 for base and large, 4 for tiny), every trainable parameter gets a
    layer id (:meth:`Florence2DaViT.layer_id`):

    ============================================  ===============================
    parameter                                     layer id
    ============================================  ===============================
    ``backbone.vision_tower.stem.*``              0
    depth unit ``u`` (0-based, over all stages)   ``u + 1``
    stage ``s``'s downsampling conv and norm      id of stage ``s``'s first unit
    ``backbone.out_norms.*``, necks, heads, ...   ``L + 1``
    ============================================  ===============================

    and the learning rate ``lr * decay_rate ** (L + 1 - layer_id)``. For DaViT-B (depths 1, 1, 9, 1)
    that is: stem ``lr * d^13``; stage 1 ``d^12``; stage 2 ``d^11``; stage 3's downsampler and first
    unit ``d^10``, its last unit ``d^2``; stage 4 ``d^1``; everything outside the tower ``lr``.
    Parameters with one dimension or none (biases, norm weights) get ``weight_decay=0``, the rest
    the optimizer's weight decay. Frozen parameters (``requires_grad=False``) are left out. Each
    param group carries its ``layer_id`` and ``lr_scale``.

    Config (mmengine's ``optim_wrapper``)::

        optim_wrapper = dict(
            type=OptimWrapper, optimizer=dict(type=AdamW, lr=1e-4, weight_decay=0.05),
            constructor=LayerDecayOptimWrapperConstructor,   # or "LayerDecayOptimWrapperConstructor"
            paramwise_cfg=dict(decay_rate=0.9, backbone="backbone"))

    ``backbone`` is the attribute path of the Florence2DaViT in the model (``backbone`` in mmdet's
    detectors and mmseg's segmentors).
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: dict | None = None):
        paramwise_cfg = dict(paramwise_cfg or {})
        self.decay_rate = paramwise_cfg.pop("decay_rate", 0.9)
        self.backbone_name = paramwise_cfg.pop("backbone", "backbone")
        if paramwise_cfg:
            raise ConfigError(f"LayerDecayOptimWrapperConstructor: unknown paramwise_cfg keys {sorted(paramwise_cfg)}; "
                              "it takes decay_rate and backbone")
        if not (isinstance(self.decay_rate, (int, float)) and 0 < self.decay_rate <= 1):
            raise ConfigError(f"LayerDecayOptimWrapperConstructor: decay_rate must be in (0, 1], got {self.decay_rate!r}")
        # a non-empty paramwise_cfg makes mmengine call add_params
        super().__init__(optim_wrapper_cfg, dict(decay_rate=self.decay_rate))

    def add_params(self, params: list, module: nn.Module, **kwargs) -> None:
        try:
            backbone = module.get_submodule(self.backbone_name)
        except AttributeError:
            backbone = None
        if not isinstance(backbone, Florence2DaViT):
            raise ConfigError(f"LayerDecayOptimWrapperConstructor: the model's {self.backbone_name!r} is "
                              f"{type(backbone).__name__}, expected a Florence2DaViT (paramwise_cfg.backbone names it)")
        top = backbone.num_layers + 1
        prefix = self.backbone_name + "."
        lr, weight_decay = self.base_lr, self.base_wd or 0.0
        groups = {}
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            layer_id = backbone.layer_id(name[len(prefix):]) if name.startswith(prefix) else top
            decay = param.ndim > 1
            key = (layer_id, decay)
            if key not in groups:
                scale = self.decay_rate ** (top - layer_id)
                groups[key] = dict(params=[], lr=lr * scale, weight_decay=weight_decay if decay else 0.0,
                                   layer_id=layer_id, lr_scale=scale)
            groups[key]["params"].append(param)
        params.extend(groups[k] for k in sorted(groups))
        MMLogger.get_current_instance().info(
            f"layer-wise lr decay {self.decay_rate}: {len(groups)} param groups, stem lr x{self.decay_rate ** top:.3g}")
