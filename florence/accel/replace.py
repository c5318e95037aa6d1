"""Module replacement: how :func:`florence.accel.apply` puts its modules into a model.

:func:`replace_modules` swaps submodules for new ones in their parents (``setattr``), as
``torch.ao.quantization`` swaps a float module for its quantized one. :func:`take_over` builds the
new module from the old one's state: parameters, buffers, submodules, hooks and other attributes are
the same objects, so optimisers, weight ties, hook handles and LoRA wrappers keep working and
nothing is copied or allocated.

Example::

    >>> replace_modules(model, {nn.Linear: lambda m: take_over(m, FastLinear)})
    ['language_model.lm_head', ...]
"""
from __future__ import annotations

from typing import Callable

import torch.nn as nn

__all__ = ["replace_modules", "take_over"]


def take_over(module: nn.Module, cls: type[nn.Module]) -> nn.Module:
    """A new ``cls`` module holding ``module``'s state (the same objects, not copies). ``cls`` must
    keep ``type(module)``'s attributes: a subclass of it, or the class it came from."""
    new = cls.__new__(cls)
    new.__dict__.update(module.__dict__)
    return new


def replace_modules(model: nn.Module, plan: dict[type, Callable[[nn.Module], nn.Module]]) -> list[str]:
    """Replace every submodule of ``model`` whose exact type is a key of ``plan`` by ``plan[type](m)``,
    in its parents; a module found under several names is replaced once. Returns the names replaced
    (``""``: ``model`` itself matched; it cannot be replaced in place and is left as it is)."""
    done: dict[int, nn.Module] = {}
    names = []
    for parent_name, parent in list(model.named_modules(remove_duplicate=False)):
        for name, child in list(parent._modules.items()):
            build = plan.get(type(child)) if child is not None else None
            if build is None:
                continue
            if id(child) not in done:
                done[id(child)] = build(child)
                names.append(f"{parent_name}.{name}" if parent_name else name)
            setattr(parent, name, done[id(child)])
    return names
