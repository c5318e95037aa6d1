"""Florence-2's DaViT image encoder as an OpenMMLab backbone (mmdet detectors, mmseg segmentors).

The network is the vision tower of :class:`florence.models.Florence2ForConditionalGeneration`,
built and read through the same :class:`florence.models.tower.Tower` (Florence-2's DaViT: timm's
Florence-2 DaViT with Florence-2's drop-path schedule, at the sizes of the model's presets), so its
parameters carry the same names (``vision_tower.*``) and a Florence-2 checkpoint in any layout loads
into it. This file adds what detection and segmentation
need: multi-scale outputs, frozen stages, gradient checkpointing, initialisation from a checkpoint,
and the layer ids that layer-wise learning-rate decay uses.

Any input size works: timm's DaViT pads the stem input to a multiple of 4 and each spatial block's
input to a multiple of the window size, and crops back after the window attention.

Example (``import florence.downstream`` registers it with mmdet and mmseg)::

    >>> backbone = Florence2DaViT(arch="tiny", out_indices=(1, 2, 3))
    >>> [f.shape for f in backbone(torch.zeros(1, 3, 100, 70))]
    [torch.Size([1, 64, 13, 9]), torch.Size([1, 128, 7, 5]), torch.Size([1, 256, 4, 3])]
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import torch
import torch.nn as nn
from mmengine.logging import MMLogger
from mmengine.model import BaseModule
from timm.layers import LayerNorm2d

from ..models.files import CheckpointError, read_state_dict, resolve_folder
from ..models.layouts import _IGNORED, check_keys, convert_state_dict, detect_layout
from ..models.config import PRESETS, ConfigError, VisionConfig
from ..models.tower import get_tower

__all__ = ["Florence2DaViT", "load_tower_state_dict"]

# the tower sizes of florence's presets (Florence-2-base's DaViT-B, Florence-2-large's, the tiny test model)
ARCHS = {name: PRESETS[name][0] for name in ("tiny", "base", "large")}
_ARCH_KEYS = ("embed_dims", "depths", "num_heads", "window_size", "mlp_ratio", "qkv_bias", "tower")


def _vision_config(arch, drop_path_rate: float) -> VisionConfig:
    if isinstance(arch, str):
        if arch not in ARCHS:
            raise ConfigError(f"Florence2DaViT: unknown arch {arch!r}; valid: {sorted(ARCHS)} or a dict with "
                              f"keys from {_ARCH_KEYS}")
        kw = {k: v for k, v in ARCHS[arch].items() if k in _ARCH_KEYS}
    elif isinstance(arch, dict):
        unknown = sorted(set(arch) - set(_ARCH_KEYS))
        if unknown:
            raise ConfigError(f"Florence2DaViT: unknown arch keys {unknown}; valid: {_ARCH_KEYS}")
        kw = dict(arch)
    else:
        raise ConfigError(f"Florence2DaViT: arch must be a name {sorted(ARCHS)} or a dict, got {type(arch).__name__}")
    if "num_heads" in kw:
        kw["num_groups"] = kw["num_heads"]  # DaViT uses one number for heads and channel groups
    kw.update(VisionConfig.patch_geometry(len(kw.get("embed_dims", VisionConfig.embed_dims))))
    if not 0 <= drop_path_rate < 1:
        raise ConfigError(f"Florence2DaViT: drop_path_rate must be in [0, 1), got {drop_path_rate}")
    return VisionConfig(**kw, drop_path_rate=drop_path_rate)


class Florence2DaViT(BaseModule):
    """DaViT with multi-scale outputs for detectors and segmentors.

    Args:
        arch: ``"base"`` (DaViT-B of Florence-2-base: dims 128-1024, depths 1,1,9,1), ``"large"``
            (Florence-2-large's: dims 256-2048), ``"tiny"`` (tests), or a dict with ``embed_dims``,
            ``depths``, ``num_heads``, ``window_size``, ``mlp_ratio``, ``qkv_bias`` (and ``tower``, a
            registered :class:`~florence.models.tower.Tower` other than Florence-2's DaViT).
        out_indices: stages whose outputs :meth:`forward` returns (0-based; strides 4, 8, 16, 32).
        frozen_stages: -1 trains everything; 0 freezes the stem; k >= 1 freezes the stem and the
            first k stages (each stage with its downsampling conv) and their output norms. Frozen
            means no gradients and eval mode, which :meth:`train` keeps (so drop-path is off there).
        drop_path_rate: the largest stochastic-depth rate; rates rise linearly over the
            2 * sum(depths) blocks as in Florence-2 (0.1 in its pre-training).
        with_cp: gradient checkpointing of each stage (less memory, ~30% more compute).
        out_norms: a LayerNorm over channels on each output (new parameters, as Swin/DaViT
            detection backbones have; Florence-2's tower has none).
        init_cfg: ``dict(type="Pretrained", checkpoint=PATH)`` takes the vision tower from PATH: a
            Florence-2 folder in Microsoft's hub layout or the transformers-native one, a hub id, a
            folder florence saved, a ``.safetensors`` file, or a ``.pth`` written by florence's or
            mmdet's/mmseg's runner (its ``vision_tower.*`` tensors under any prefix, e.g.
            ``model.`` or ``backbone.``). Everything but the tower is ignored; a tower of another
            size fails, naming the mismatched tensors. Other init_cfg types go to mmengine.
    """

    def __init__(self, arch="base", out_indices=(0, 1, 2, 3), frozen_stages: int = -1, drop_path_rate: float = 0.1,
                 with_cp: bool = False, out_norms: bool = True, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        vision = _vision_config(arch, drop_path_rate)
        self.tower = get_tower(vision)
        self.vision = vision
        self.vision_tower = self.tower.build(vision)
        self.depths = tuple(vision.depths)
        n = len(self.depths)
        out_indices = (out_indices,) if isinstance(out_indices, int) else tuple(out_indices)
        if not out_indices or list(out_indices) != sorted(set(out_indices)) or not all(
                isinstance(i, int) and 0 <= i < n for i in out_indices):
            raise ConfigError(f"Florence2DaViT: out_indices must be increasing stage indices in 0..{n - 1}, "
                              f"got {out_indices}")
        if not (isinstance(frozen_stages, int) and -1 <= frozen_stages <= n):
            raise ConfigError(f"Florence2DaViT: frozen_stages must be an int in -1..{n} "
                              f"(-1: none, 0: the stem, k: stem + first k stages), got {frozen_stages!r}")
        self.out_indices, self.frozen_stages = out_indices, frozen_stages
        self.out_channels = [vision.embed_dims[i] for i in out_indices]
        self.out_norms = nn.ModuleList(LayerNorm2d(c) for c in self.out_channels) if out_norms else None
        self.tower.set_grad_checkpointing(self.vision_tower, with_cp)
        self._freeze()

    # ---- frozen stages ---------------------------------------------------------------------------
    def frozen_modules(self) -> list[nn.Module]:
        if self.frozen_stages < 0:
            return []
        modules = self.tower.parts(self.vision_tower)[:self.frozen_stages + 1]  # the stem, then stages
        if self.out_norms is not None:
            modules += [norm for i, norm in zip(self.out_indices, self.out_norms) if i < self.frozen_stages]
        return modules

    def _freeze(self):
        for module in self.frozen_modules():
            module.eval()
            for p in module.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze()  # frozen parts stay in eval mode
        return self

    # ---- forward ---------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(B, 3, H, W) -> one (B, C_i, ceil(H / 2^(i+2)), ceil(W / 2^(i+2))) map per out index."""
        feats = self.tower.intermediates(self.vision_tower, x, self.out_indices)
        if self.out_norms is not None:
            feats = [norm(f) for norm, f in zip(self.out_norms, feats)]
        return tuple(feats)

    # ---- layer ids for layer-wise lr decay ---------------------------------------------------------
    @property
    def num_layers(self) -> int:
        """Depth units (a spatial + a channel block each): 12 for base and large."""
        return sum(self.depths)

    def layer_id(self, name: str) -> int:
        """The layer id of parameter ``name`` (relative to this module): 0 for the stem, ``u + 1`` for
        depth unit ``u`` (counted over all stages from the input), a stage's downsampling conv the id
        of the stage's first unit, and ``num_layers + 1`` for anything else (the output norms)."""
        if not name.startswith("vision_tower."):
            return self.num_layers + 1
        return self.tower.layer_id(name[len("vision_tower."):], self.vision)

    # ---- initialisation from a checkpoint --------------------------------------------------------
    def init_weights(self):
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get("type") == "Pretrained":
            unknown = sorted(set(cfg) - {"type", "checkpoint", "map_location"})
            if "checkpoint" not in cfg or unknown:
                raise ConfigError("Florence2DaViT: init_cfg=dict(type='Pretrained', checkpoint=PATH) takes a "
                                  f"checkpoint path and nothing else; got keys {sorted(cfg)}")
            self.load_tower(cfg["checkpoint"])
            self._is_init = True
        else:
            super().init_weights()

    def load_tower(self, path) -> str:
        """Copy the vision tower of checkpoint ``path`` into this backbone (strict; see ``init_cfg``).
        Returns the layout the checkpoint was in."""
        state, layout = load_tower_state_dict(path)
        check_keys(self.vision_tower.state_dict(), state,
                   f"{path} ({layout} layout): its vision tower does not fit Florence2DaViT's arch")
        self.vision_tower.load_state_dict(state, strict=True)
        MMLogger.get_current_instance().info(
            f"Florence2DaViT: loaded the vision tower ({len(state)} tensors) from {path} ({layout} layout)")
        return layout


# ---------------------------------------------------------------------------------------------
# checkpoint -> tower weights
# ---------------------------------------------------------------------------------------------
_FLORENCE_TOWER = re.compile(r"^(.*?)vision_tower\.(?:stem|stages)\.")
# where each layout keeps the tower; a florence-layout file whose tower is not DaViT (no stem / stages) is
# found by detect_layout, at the top level
_TOWER_PREFIX = {"florence": "vision_tower.", "microsoft": "vision_tower.", "native": "model.vision_tower."}


def _read(path) -> dict:
    p = Path(os.path.expanduser(str(path)))
    if not p.exists():
        return read_state_dict(resolve_folder(path))  # a hub id, or a clear "no such folder" error
    if p.is_dir():
        return read_state_dict(p)
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(p))
    try:  # tensors only, never arbitrary code: files florence's and our configs' runners write load so
        ckpt = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as e:
        lines = str(e).splitlines() or [""]
        reason = next((line.strip() for line in lines if "Unsupported global" in line), lines[0]).split(". Please")[0]
        raise CheckpointError(
            f"cannot read {p} as a checkpoint with torch.load(weights_only=True) ({type(e).__name__}: {reason}). "
            "Runs of florence's configs write checkpoints that load this way; for another file you trust, "
            "save its state dict alone (torch.save(ckpt['state_dict'], 'weights.pth')) and pass that") from e
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(f"{p} holds a {type(ckpt).__name__}, not a state dict (or a dict with 'state_dict')")
    return state


def load_tower_state_dict(path) -> tuple[dict, str]:
    """The vision tower's tensors of a checkpoint, named as in :class:`Florence2DaViT`'s
    ``vision_tower`` (timm's names), and the layout they were found in (``microsoft``, ``native``
    or ``florence``). ``path`` is anything ``init_cfg`` accepts."""
    state = _read(path)
    prefixes = {m.group(1) for k in state if (m := _FLORENCE_TOWER.match(k))}
    if len(prefixes) > 1:
        raise CheckpointError(f"{path} holds more than one vision tower (under prefixes {sorted(prefixes)})")
    if prefixes:
        prefix, layout = prefixes.pop() + "vision_tower.", "florence"
        tower = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    else:
        try:
            layout = detect_layout(state)
        except CheckpointError as e:
            raise CheckpointError(f"{path}: no Florence-2 vision tower found. {e}") from None
        prefix = _TOWER_PREFIX[layout]
        tower = convert_state_dict({k: v for k, v in state.items() if k.startswith(prefix)}, layout, "florence")
        tower = {k[len("vision_tower."):]: v for k, v in tower.items() if not _IGNORED.match(k)}
    if not tower:
        raise CheckpointError(f"{path} ({layout} layout) has no vision tower tensors")
    return tower, layout
