"""Helpers the tests import (``from helpers import ...``: tests/ is on sys.path as pytest's rootdir;
a name of its own, as every test folder's ``conftest`` is a module named ``conftest``)."""
import torch


def randomize_(model, seed=0):
    """Weights large enough that logits and generation depend on every input (default inits give
    near-uniform logits, which would make parity checks weak)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if p.ndim == 1 and "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.1 * noise)
            elif p.ndim == 1:
                p.copy_(0.1 * noise)
            elif name.endswith("shared.weight"):  # equal-norm rows: no token wins whatever the input
                p.copy_(torch.nn.functional.normalize(noise, dim=-1) * 4)
            else:
                p.copy_(noise * min(0.5, 1.5 / p.shape[-1] ** 0.5))
    return model


def within_one_px(ours, native):
    """florence's parsed result equals transformers' post-processing of the same text, coordinates
    within 1 px (the native port truncates them to int; we keep bin centres)."""
    if isinstance(ours, dict):
        return ours.keys() == native.keys() and all(within_one_px(ours[k], native[k]) for k in ours)
    if isinstance(ours, list):
        return len(ours) == len(native) and all(within_one_px(a, b) for a, b in zip(ours, native))
    if isinstance(ours, float):
        return abs(ours - native) < 1.0
    return ours == native
