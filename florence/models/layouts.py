"""Florence-2 checkpoint layouts: the two published ones, and ours, beside the model they feed.

Three key layouts name the same tensors:

- ``florence`` (ours): Microsoft's names, except the vision tower, which is timm's DaViT
  (``vision_tower.stem.*``, ``vision_tower.stages.S.blocks.B.X.*``).
- ``microsoft``: the hub repos microsoft/Florence-2-{base,large}[-ft]
  (``vision_tower.convs.*``, ``image_projection`` [C4, D], ``language_model.model.*``).
- ``native``: transformers' own port, florence-community/* (``model.vision_tower.*``,
  ``model.multi_modal_projector.*``, ``model.language_model.*``, ``lm_head.weight``), whose
  projection is a bias-free Linear (the transpose) and which has no ``final_logits_bias``.

One table (``_RULES``) lists each family of keys in all three layouts, so every conversion runs
in both directions from the same facts. A test checks the Microsoft column against timm's own
converter (``timm.models.davit.checkpoint_filter_fn``).

Loading fills tied embeddings the file leaves out, and refuses anything else: missing,
unexpected or mis-shaped keys are listed (first few, and counts), never partially loaded.
"""
from __future__ import annotations

import re

import torch

from .files import CheckpointError
from .tower import DaViT, get_tower

__all__ = ["LAYOUTS", "detect_layout", "convert_state_dict", "check_keys", "load_state_dict_strict",
           "state_dict_to_save"]

LAYOUTS = ("florence", "microsoft", "native")


def _tower_rules():
    """The tower's own rules (:attr:`florence.models.tower.Tower.key_rules`) under the tower's prefix."""
    return [("vision_tower." + f, "vision_tower." + m, "model.vision_tower." + n) for f, m, n in DaViT.key_rules]


# (florence, microsoft, native) key prefixes; None = the layout has no such tensor.
_RULES = _tower_rules() + [
    ("image_projection", "image_projection", "model.multi_modal_projector.image_projection.weight"),
    ("image_proj_norm.", "image_proj_norm.", "model.multi_modal_projector.image_proj_norm."),
    ("image_pos_embed.", "image_pos_embed.", "model.multi_modal_projector.image_position_embed."),
    ("visual_temporal_embed.", "visual_temporal_embed.", "model.multi_modal_projector.visual_temporal_embed."),
    ("language_model.model.", "language_model.model.", "model.language_model."),
    ("language_model.lm_head.", "language_model.lm_head.", "lm_head."),
    ("language_model.final_logits_bias", "language_model.final_logits_bias", None),
]
_TRANSPOSED = {("florence", "native"), ("native", "florence"), ("microsoft", "native"), ("native", "microsoft")}
_PROJECTION_KEYS = {"image_projection", "model.multi_modal_projector.image_projection.weight"}
# Tensors that are deterministic or always zero in published files: computed when a file lacks them.
_OPTIONAL = {
    "language_model.final_logits_bias": lambda m: torch.zeros(1, m.config.vocab_size),
    "visual_temporal_embed.pos_idx_to_embed": lambda m: m.visual_temporal_embed.table(
        m.config.vision.embed_dims[-1], m.config.vision.max_temporal_embeddings),
}
# tensors published files carry that the tower never runs (Microsoft's DaViT class has a classifier)
_IGNORED = re.compile(r"^vision_tower\." + DaViT.ignored.pattern.lstrip("^"))


def _pattern(template: str) -> re.Pattern:
    regex = re.escape(template).replace(r"\{s\}", r"(?P<s>\d+)").replace(r"\{b\}", r"(?P<b>\d+)")
    return re.compile("^" + regex)


_COMPILED = [{layout: (t, _pattern(t)) if t is not None else None for layout, t in zip(LAYOUTS, row)}
             for row in _RULES]


def _translate(key: str, src: str, dst: str) -> str | None:
    """The name of ``key`` (layout ``src``) in layout ``dst``; None if ``dst`` has no such tensor;
    the key itself if no rule knows it (it then surfaces as an unexpected key)."""
    if src == dst:
        return key
    for row in _COMPILED:
        if row[src] is None:
            continue
        m = row[src][1].match(key)
        if m:
            if row[dst] is None:
                return None
            return row[dst][0].format(**m.groupdict()) + key[m.end():]
    return key


def convert_state_dict(state_dict: dict, src: str, dst: str) -> dict:
    """Rename (and transpose the projection where needed) from layout ``src`` to ``dst``.

    Tensors ``dst`` has no place for (``final_logits_bias`` in the native layout) are dropped only
    when they are all zeros; otherwise this raises instead of losing data."""
    for layout in (src, dst):
        if layout not in LAYOUTS:
            raise CheckpointError(f"unknown checkpoint layout {layout!r}; valid: {LAYOUTS}")
    out = {}
    for key, value in state_dict.items():
        new = _translate(key, src, dst)
        if new is None:
            if torch.count_nonzero(value):
                raise CheckpointError(f"{key} is non-zero and the {dst} layout has no place for it; "
                                      f"save in the 'microsoft' layout instead")
            continue
        if key in _PROJECTION_KEYS and (src, dst) in _TRANSPOSED:
            value = value.t().contiguous()
        out[new] = value
    return out


def detect_layout(keys) -> str:
    keys = list(keys)
    if any(k.startswith(("model.vision_tower.", "model.multi_modal_projector.", "model.language_model."))
           for k in keys):
        return "native"
    if any(k.startswith(("vision_tower.convs.", "vision_tower.blocks.")) for k in keys):
        return "microsoft"
    if any(k.startswith("vision_tower.") for k in keys):  # timm's DaViT names, or another tower's own
        return "florence"
    raise CheckpointError(
        f"not a Florence-2 checkpoint: none of its {len(keys)} keys (first: {keys[:5]}) is in Microsoft's "
        "hub layout ('vision_tower.convs.*', 'language_model.model.*'), the transformers-native layout "
        "('model.vision_tower.*', 'model.language_model.*') or florence's ('vision_tower.stem.*')")


def _tied_groups(model) -> list[list[str]]:
    """Keys of the state dict that name one parameter (tied embeddings), in state-dict order."""
    by_object = {}
    for key, value in model.state_dict(keep_vars=True).items():
        by_object.setdefault(id(value), []).append(key)
    return [keys for keys in by_object.values() if len(keys) > 1]


def _listing(items, n=5) -> str:
    items = list(items)
    return f"{len(items)}: {items[:n]}" + (" ..." if len(items) > n else "")


def check_keys(expected: dict, state: dict, what: str):
    """Raise a CheckpointError starting with ``what`` that lists the missing, unexpected and
    mis-shaped keys of ``state`` against ``expected`` (a model's state dict); nothing if they match."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
                  for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or mismatched:
        parts = [what]
        if missing:
            parts.append("missing keys " + _listing(missing))
        if unexpected:
            parts.append("unexpected keys " + _listing(unexpected))
        if mismatched:
            parts.append("mis-shaped keys " + _listing(mismatched))
        raise CheckpointError("; ".join(parts) + " (key names in florence's layout)")


def load_state_dict_strict(model, state: dict, source: str = "checkpoint", assign: bool = False):
    """Load a florence-layout state dict, filling tied aliases and optional tensors; any other
    difference raises a CheckpointError listing missing, unexpected and mis-shaped keys.

    ``assign=True`` adopts the file's tensors (for a model built on the meta device, which skips
    random initialisation) and ties the embeddings again afterwards."""
    state = {k: v for k, v in state.items() if not _IGNORED.match(k)}
    expected = model.state_dict()
    groups = _tied_groups(model)
    for group in groups:
        present = [k for k in group if k in state]
        if not present:
            continue
        first = state[present[0]]
        for k in present[1:]:
            if state[k].shape != first.shape or not torch.equal(state[k], first):
                raise CheckpointError(f"{source}: {present[0]} and {k} differ, but this model ties them "
                                      "(text_config.tie_word_embeddings); set it to false to load untied weights")
        for k in group:
            state.setdefault(k, first)
    for k, default in _OPTIONAL.items():
        if k not in state:
            state[k] = default(model)
    check_keys(expected, state, f"{source} does not match the model built from its config")
    model.load_state_dict(state, strict=True, assign=assign)
    if assign:
        for group in groups:  # one Parameter object per tied group again, as built
            param = model.get_parameter(group[0])
            for key in group[1:]:
                owner, _, name = key.rpartition(".")
                setattr(model.get_submodule(owner), name, param)
        unset = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
        if unset:
            raise CheckpointError(f"{source}: tensors left uninitialised after loading: {_listing(unset)}")


def state_dict_to_save(model, layout: str = "native") -> dict:
    """The model's tensors in ``layout``, one per tied group (the ``shared`` embedding), as published
    files hold them."""
    aliases = set()
    for group in _tied_groups(model):
        keep = next((k for k in group if ".shared." in k), group[0])
        aliases.update(k for k in group if k != keep)
    state = {k: v for k, v in model.state_dict().items() if k not in aliases}
    if layout != "florence" and not get_tower(model.config.vision).key_rules:
        raise CheckpointError(f"a {model.config.vision.tower!r} vision tower has no place in the published "
                              f"{layout!r} layout (only Florence-2's DaViT has); save with layout='florence'")
    return convert_state_dict(state, "florence", layout)
