"""Checkpoint files: find a folder (local, or a hub id through huggingface_hub), read its tensors
(model.safetensors, sharded safetensors, pytorch_model.bin) and write them. Names and layouts are
not this module's business (:mod:`florence.models.layouts`); it imports nothing of the model.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch

__all__ = ["CheckpointError", "resolve_folder", "read_state_dict", "write_state_dict"]


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be loaded as asked: unreadable, of another model, or not matching its config."""


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


def write_state_dict(state: dict, folder) -> None:
    """``folder/model.safetensors`` (the folder is created), tensors made contiguous on the CPU."""
    from safetensors.torch import save_file

    os.makedirs(folder, exist_ok=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in state.items()},
              os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
