"""Downstream transfer: Florence-2's DaViT in mmdet's detectors and mmseg's segmentors.

Importing this package registers, in the registries of whichever of mmdet and mmseg is installed
(``pip install -e .[downstream]``):

- ``Florence2DaViT`` in ``MODELS``: the backbone (multi-scale outputs, frozen stages, drop-path,
  gradient checkpointing, init from a Florence-2 checkpoint in either published layout);
- ``LayerDecayOptimWrapperConstructor`` in ``OPTIM_WRAPPER_CONSTRUCTORS``: layer-wise lr decay.

``import florence`` never imports this package (nor mmdet / mmseg). Configs in
``configs/downstream/`` refer to the classes themselves, which imports it; dict-style configs use
``custom_imports = dict(imports=["florence.downstream"])`` and the names above.
"""
import importlib
import importlib.util

from .backbone import Florence2DaViT, load_tower_state_dict
from .layer_decay import LayerDecayOptimWrapperConstructor

__all__ = ["Florence2DaViT", "LayerDecayOptimWrapperConstructor", "load_tower_state_dict", "REGISTERED_IN"]


def _register() -> tuple:
    scopes = [s for s in ("mmdet", "mmseg") if importlib.util.find_spec(s) is not None]
    if not scopes:
        raise ImportError("florence.downstream needs mmdet and/or mmseg: install florence with the downstream "
                          "extra (`bash tools/install.sh`, or `pip install -e .[downstream]` after building mmcv; "
                          "see the README's 'Downstream transfer' section)")
    for scope in scopes:  # an installed but broken mmdet/mmseg fails here with its own error, never skipped
        registry = importlib.import_module(f"{scope}.registry")
        registry.MODELS.register_module(module=Florence2DaViT, force=True)
        registry.OPTIM_WRAPPER_CONSTRUCTORS.register_module(module=LayerDecayOptimWrapperConstructor, force=True)
    return tuple(scopes)


REGISTERED_IN = _register()
