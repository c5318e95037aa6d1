"""Florence-2 checkpoints: the two published layouts, and ours.

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

import json
import os
import re
from pathlib import Path

import torch

from .models.config import ConfigError, Florence2Config
from .models.florence2 import CosineTemporalEmbedding

__all__ = ["CheckpointError", "LAYOUTS", "detect_layout", "convert_state_dict", "read_state_dict",
           "resolve_folder", "load_pretrained", "save_pretrained"]

LAYOUTS = ("florence", "microsoft", "native")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be loaded as asked: unreadable, of another model, or not matching its config."""


def _tower_rules():
    rules = [  # (florence = timm, microsoft, native), relative to the tower prefix
        ("stem.conv.", "convs.0.proj.", "convs.0.conv."),
        ("stem.norm.", "convs.0.norm.", "convs.0.norm."),
        ("stages.{s}.downsample.conv.", "convs.{s}.proj.", "convs.{s}.conv."),
        ("stages.{s}.downsample.norm.", "convs.{s}.norm.", "convs.{s}.norm."),
    ]
    for kind, attn in (("spatial_block", "window_attn"), ("channel_block", "channel_attn")):
        f, m = f"stages.{{s}}.blocks.{{b}}.{kind}.", f"blocks.{{s}}.{{b}}.{kind}."
        rules += [
            (f + "cpe1.proj.", m + "conv1.fn.dw.", m + "conv1."),
            (f + "cpe2.proj.", m + "conv2.fn.dw.", m + "conv2."),
            (f + "norm1.", m + f"{attn}.norm.", m + "norm1."),
            (f + "attn.", m + f"{attn}.fn.", m + f"{attn}."),
            (f + "norm2.", m + "ffn.norm.", m + "norm2."),
            (f + "mlp.", m + "ffn.fn.net.", m + "ffn."),
        ]
    return [("vision_tower." + f, "vision_tower." + m, "model.vision_tower." + n) for f, m, n in rules]


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
    "visual_temporal_embed.pos_idx_to_embed": lambda m: CosineTemporalEmbedding.table(
        m.config.vision.embed_dims[-1], m.config.vision.max_temporal_embeddings),
}
# Microsoft's DaViT class defines a classifier norm/head that Florence-2 never runs.
_IGNORED = re.compile(r"^vision_tower\.(norms|head)\.")


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
    if any(k.startswith(("vision_tower.stem.", "vision_tower.stages.")) for k in keys):
        return "florence"
    raise CheckpointError(
        f"not a Florence-2 checkpoint: none of its {len(keys)} keys (first: {keys[:5]}) is in Microsoft's "
        "hub layout ('vision_tower.convs.*', 'language_model.model.*'), the transformers-native layout "
        "('model.vision_tower.*', 'model.language_model.*') or florence's ('vision_tower.stem.*')")


# ---------------------------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------------------------
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def resolve_folder(path_or_hub_id) -> Path:
    """A local folder as is; a hub id (``org/name``) downloaded through huggingface_hub."""
    p = Path(os.path.expanduser(str(path_or_hub_id)))
    if p.is_dir():
        return p
    if p.exists():
        raise CheckpointError(f"{p} is a file; pass the folder that holds config.json and the weights")
    name = str(path_or_hub_id)
    if not _HUB_ID.match(name):
        raise CheckpointError(f"no such checkpoint folder: {p}")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, allow_patterns=["*.json", "*.safetensors", "*.bin", "*.txt"]))
    except Exception as e:  # offline, unknown repo, gated, ...
        raise CheckpointError(
            f"could not download {name!r} from the Hugging Face Hub ({type(e).__name__}: {e}). "
            f"On a machine without hub access, download the repository elsewhere "
            f"(`hf download {name} --local-dir DIR`), copy DIR here and pass the folder: "
            f"Florence2ForConditionalGeneration.from_pretrained('DIR')") from e


def _read_file(path: Path) -> dict:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        # .bin: pickles restricted to tensors (never arbitrary code), whatever torch's default is
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"cannot read {path}: {type(e).__name__}: {e}. The file is truncated, corrupt "
                              "or not a weights file; download it again") from e


def read_state_dict(folder) -> dict:
    """All tensors of a checkpoint folder: model.safetensors, sharded safetensors (with their
    index), or pytorch_model.bin (sharded or not)."""
    folder = Path(folder)
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).is_file():
            return _read_file(folder / name)
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = folder / index_name
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (ValueError, KeyError) as e:
                raise CheckpointError(f"{index} is not a shard index (needs a 'weight_map'): {e}") from e
            state = {}
            for shard in sorted(set(weight_map.values())):
                if not (folder / shard).is_file():
                    raise CheckpointError(f"{index} names shard {shard}, which is missing from {folder}")
                state.update(_read_file(folder / shard))
            absent = sorted(set(weight_map) - set(state))
            if absent:
                raise CheckpointError(f"{len(absent)} tensors listed in {index} are in no shard: {absent[:5]}")
            return state
    raise CheckpointError(f"{folder} holds no weights: expected model.safetensors, "
                          "model.safetensors.index.json + shards, or pytorch_model.bin")


# ---------------------------------------------------------------------------------------------
# model <-> state dict
# ---------------------------------------------------------------------------------------------
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


def load_pretrained(cls, path_or_hub_id, dtype=None, device=None):
    folder = resolve_folder(path_or_hub_id)
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise CheckpointError(f"{folder} has no config.json")
    try:
        config = Florence2Config.from_json_file(config_file)
    except (ConfigError, KeyError, TypeError) as e:
        raise CheckpointError(f"{config_file} is not a usable Florence-2 config: {e}") from e
    state = read_state_dict(folder)
    layout = detect_layout(state)
    with torch.device("meta"):  # no random initialisation of weights the file replaces
        model = cls(config)
    load_state_dict_strict(model, convert_state_dict(state, layout, "florence"),
                           source=f"{folder} ({layout} layout)", assign=True)
    unset = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if unset:
        raise CheckpointError(f"{folder}: tensors left uninitialised after loading: {_listing(unset)}")
    return model.to(device=device, dtype=dtype or torch.float32).eval()


def save_pretrained(model, folder, layout: str = "native"):
    """config.json (the layout's dialect; ``florence`` writes the native dialect) + model.safetensors,
    one tensor per tied group (the ``shared`` embedding), as published files do."""
    from safetensors.torch import save_file

    aliases = set()
    for group in _tied_groups(model):
        keep = next((k for k in group if ".shared." in k), group[0])
        aliases.update(k for k in group if k != keep)
    state = {k: v for k, v in model.state_dict().items() if k not in aliases}
    state = convert_state_dict(state, "florence", layout)
    os.makedirs(folder, exist_ok=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in state.items()},
              os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
    model.config.save(folder, dialect="microsoft" if layout == "microsoft" else "native")
