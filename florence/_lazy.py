"""Public names that load on first use: a package's ``__init__`` lists where each name lives, and
importing the package imports none of them (``import florence`` stays cheap: no timm, no
transformers models, no pycocotools until a model or a metric is used), and :func:`named`, the
function a ``"module:function"`` string of a config names."""
from __future__ import annotations

import importlib


def lazy_exports(module_globals: dict, exports: dict[str, str]):
    """``(__getattr__, __dir__)`` for a package module: ``exports`` maps each public name to the
    submodule (relative, e.g. ``".inference"``) that defines it; a name is imported on first
    access and then cached in the package."""
    package = module_globals["__name__"]

    def __getattr__(name: str):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name], package), name)
        module_globals[name] = value
        return value

    def __dir__():
        return sorted(set(module_globals) | set(exports))

    return __getattr__, __dir__


def named(spec: str):
    """The function a ``"module:function"`` string names (configs name functions this way: a
    tokenizer's texts, a filter's label list, a text scorer). A ValueError names ``spec`` when it has
    another form or names nothing."""
    module, _, name = spec.partition(":") if isinstance(spec, str) else ("", "", "")
    if not module or not name:
        raise ValueError(f"expected 'module:function', got {spec!r}")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"{spec!r} names no function: {type(e).__name__}: {e}") from e
