"""The vision tower, in one place: how it is built from a :class:`~florence.models.config.VisionConfig`
and how its features, stages, layer ids and tensor names are read.

Florence-2's tower is DaViT (timm's ``davit_*_fl``, :class:`DaViT` below). Everything else reads the
tower through :func:`get_tower` and never by its module names:

- ``florence2.py`` builds it and takes its last-stage features (``encode_image``);
- ``layouts.py`` names its tensors in the published checkpoint layouts (:attr:`Tower.key_rules`);
- :mod:`florence.accel` switches DaViT to its channels-last path: it sets ``tower.fast_features``,
  which :meth:`DaViT.features` calls on CPU in place of timm's ``forward_features`` (the switch
  lives on the one path; no class of its own, and the model never imports the accelerator);
- :mod:`florence.downstream` takes multi-scale features, the stem and stages for freezing and the
  layer ids of layer-wise lr decay, for the same sizes as the model's presets;
- :mod:`florence.engine` turns on gradient checkpointing.

Another tower is a :class:`Tower` registered under a name (in ``florence.registry.VISION_TOWERS``) and chosen by
``VisionConfig(tower=name)``: changing the tower touches this file and ``config.py`` (its sizes),
and a plugin's tower touches neither (``tests/models/test_tower.py`` builds the model, the
accelerated model and the downstream backbone on a toy convolutional tower that way). Only DaViT
has published checkpoint layouts; another tower saves and loads in florence's own.
"""
from __future__ import annotations

import re

import torch
import torch.nn as nn

from ..registry import VISION_TOWERS
from .errors import ConfigError

__all__ = ["Tower", "DaViT", "get_tower", "build_davit", "tower_layer_id"]


class Tower:
    """What florence needs of an image encoder. A tower maps (B, 3, H, W) normalised pixels through
    a stem and ``len(vision.embed_dims)`` stages to features of ``vision.embed_dims[-1]`` channels at
    a total stride of 32 (the projector's position table counts cells of 32 px)."""

    #: (florence, microsoft, native) name prefixes of the tower's tensors, relative to the tower; ``{s}``
    #: stands for a stage and ``{b}`` for a block index. Empty: no published layout (florence's only).
    key_rules: tuple = ()
    #: tensors that published files carry and the tower never runs (names relative to the tower)
    ignored: re.Pattern | None = None

    def check(self, vision) -> None:
        """Raise :class:`~florence.models.ConfigError` for sizes this tower cannot build."""

    def build(self, vision) -> nn.Module:
        """A new tower (random weights) of ``vision``'s sizes."""
        raise NotImplementedError

    def features(self, tower: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
        """The last stage's features, channels-last: (B, 3, H, W) -> (B, H/32, W/32, C)."""
        raise NotImplementedError

    def intermediates(self, tower: nn.Module, pixels: torch.Tensor, indices) -> list:
        """The outputs of the stages in ``indices`` (0-based), each (B, C_i, H_i, W_i)."""
        raise NotImplementedError

    def parts(self, tower: nn.Module) -> list:
        """The stem, then each stage (with its downsampling), from the input: what freezing the
        first k stages freezes."""
        raise NotImplementedError

    def layer_id(self, name: str, vision) -> int:
        """The depth of tower parameter ``name`` (relative to the tower) for layer-wise lr decay: 0 for
        the stem, ``u + 1`` for depth unit ``u`` counted over all stages, ``sum(depths) + 1`` for the rest."""
        raise NotImplementedError

    def set_grad_checkpointing(self, tower: nn.Module, enable: bool = True) -> None:
        """Recompute activations in the backward pass (less memory)."""
        raise NotImplementedError


@VISION_TOWERS.register_module(name="davit")
class DaViT(Tower):
    """Florence-2's tower: timm's Florence-2 DaViT (``davit_base_fl`` with the config's sizes),
    classifier head removed, Florence-2's drop-path schedule."""

    key_rules = (
        ("stem.conv.", "convs.0.proj.", "convs.0.conv."),
        ("stem.norm.", "convs.0.norm.", "convs.0.norm."),
        ("stages.{s}.downsample.conv.", "convs.{s}.proj.", "convs.{s}.conv."),
        ("stages.{s}.downsample.norm.", "convs.{s}.norm.", "convs.{s}.norm."),
        *[(f"stages.{{s}}.blocks.{{b}}.{kind}.{ours}", f"blocks.{{s}}.{{b}}.{kind}.{microsoft}",
           f"blocks.{{s}}.{{b}}.{kind}.{native}")
          for kind, attn in (("spatial_block", "window_attn"), ("channel_block", "channel_attn"))
          for ours, microsoft, native in (("cpe1.proj.", "conv1.fn.dw.", "conv1."),
                                          ("cpe2.proj.", "conv2.fn.dw.", "conv2."),
                                          ("norm1.", f"{attn}.norm.", "norm1."),
                                          ("attn.", f"{attn}.fn.", f"{attn}."),
                                          ("norm2.", "ffn.norm.", "norm2."),
                                          ("mlp.", "ffn.fn.net.", "ffn."))],
    )
    ignored = re.compile(r"^(norms|head)\.")  # Microsoft's DaViT class has a classifier Florence-2 never runs

    def check(self, vision) -> None:
        if vision.num_groups != vision.num_heads:
            raise ConfigError(f"vision_config.num_groups {vision.num_groups} must equal num_heads {vision.num_heads}: "
                              "the DaViT tower (timm's Florence-2 variant) uses one number for both, as every "
                              "published Florence-2 checkpoint does")
        for f, want in vision.patch_geometry(len(vision.embed_dims)).items():
            if getattr(vision, f) != want:
                raise ConfigError(f"vision_config.{f} = {getattr(vision, f)} is not supported; the DaViT tower "
                                  f"implements {want} (Florence-2's published geometry)")
        for d, h in zip(vision.embed_dims, vision.num_heads):
            if d % h:
                raise ConfigError(f"vision_config: embed dim {d} is not divisible by {h} heads")
        if vision.window_size < 1:
            raise ConfigError(f"vision_config.window_size must be >= 1, got {vision.window_size}")

    def build(self, vision) -> nn.Module:
        """Drop-path follows Florence-2's schedule: linspace(0, rate, 2 * sum(depths)), the spatial and
        channel block of each depth unit taking consecutive rates (timm's default shares one per unit)."""
        import timm
        from timm.layers import DropPath

        tower = timm.create_model(
            "davit_base_fl", pretrained=False, num_classes=0,
            depths=vision.depths, embed_dims=vision.embed_dims, num_heads=vision.num_heads,
            window_size=vision.window_size, mlp_ratio=vision.mlp_ratio, qkv_bias=vision.qkv_bias,
        )
        tower.reset_classifier(0, "", reset_other=True)  # no head norm: Florence-2 uses raw stage-4 features
        rates = torch.linspace(0, vision.drop_path_rate, 2 * sum(vision.depths), device="cpu").tolist()
        units = [unit for stage in tower.stages for unit in stage.blocks]
        for i, unit in enumerate(units):
            for block, rate in ((unit.spatial_block, rates[2 * i]), (unit.channel_block, rates[2 * i + 1])):
                block.drop_path1 = DropPath(rate) if rate > 0 else nn.Identity()
                block.drop_path2 = DropPath(rate) if rate > 0 else nn.Identity()
        return tower

    def features(self, tower: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
        fast = getattr(tower, "fast_features", None)  # the switch florence.accel turns on (its channels-last path)
        if fast is not None and pixels.device.type == "cpu":
            return fast(tower, pixels)
        return tower.forward_features(pixels).permute(0, 2, 3, 1)

    def intermediates(self, tower: nn.Module, pixels: torch.Tensor, indices) -> list:
        return tower.forward_intermediates(pixels, indices=list(indices), stop_early=True, intermediates_only=True)

    def parts(self, tower: nn.Module) -> list:
        return [tower.stem, *tower.stages]

    def layer_id(self, name: str, vision) -> int:
        """A stage's downsampling conv takes the id of the stage's first unit."""
        return tower_layer_id(name, vision.depths)

    def set_grad_checkpointing(self, tower: nn.Module, enable: bool = True) -> None:
        tower.set_grad_checkpointing(enable)


def tower_layer_id(name: str, depths) -> int:
    """:meth:`DaViT.layer_id` from the stage depths alone."""
    if name.startswith("stem."):
        return 0
    m = re.match(r"stages\.(\d+)\.(downsample|blocks)\.(?:(\d+)\.)?", name)
    if m:
        first = sum(depths[:int(m.group(1))])
        return first + 1 + (int(m.group(3)) if m.group(2) == "blocks" else 0)
    return sum(depths) + 1


def get_tower(vision_or_name) -> Tower:
    """The :class:`Tower` a ``VisionConfig`` (or a tower name) asks for, from the ``VISION_TOWERS``
    registry (:mod:`florence.registry`), where a plugin registers its own:
    ``@VISION_TOWERS.register_module(name="mine") class Mine(Tower): ...``."""
    name = vision_or_name if isinstance(vision_or_name, str) else vision_or_name.tower
    cls = VISION_TOWERS.module_dict.get(name)  # no scope search: a name means the same under any default scope
    if cls is None:
        raise ConfigError(f"vision_config.tower {name!r} is not a registered tower; registered: "
                          f"{sorted(VISION_TOWERS.module_dict)} (register a florence.models.tower.Tower subclass "
                          "in florence.registry.VISION_TOWERS)")
    return cls()


def build_davit(vision) -> nn.Module:
    """Florence-2's DaViT of ``vision``'s sizes (:meth:`DaViT.build`)."""
    return DaViT().build(vision)
