"""Downstream transfer: Florence-2's DaViT in mmdet's detectors and mmseg's segmentors.

:func:`register` registers, in the registries of whichever of mmdet and mmseg is installed
(``pip install -e .[downstream]``):

- ``Florence2DaViT`` in ``MODELS``: the backbone (multi-scale outputs, frozen stages, drop-path,
  gradient checkpointing, init from a Florence-2 checkpoint in either published layout);
- ``LayerDecayOptimWrapperConstructor`` in ``OPTIM_WRAPPER_CONSTRUCTORS``: layer-wise lr decay.

``import florence`` never imports this package (nor mmdet / mmseg). Configs in
``configs/downstream/`` refer to the classes themselves and need no registration. Dict-style configs
name them, and reach florence the only way mmengine lets a config run code, by importing a module
(``custom_imports = dict(imports=["florence.downstream"])``): so importing this package calls
:func:`register`, its one registration.
"""
import importlib
import importlib.util

from .backbone import Florence2DaViT, load_tower_state_dict
from .layer_decay import LayerDecayOptimWrapperConstructor

__all__ = ["Florence2DaViT", "LayerDecayOptimWrapperConstructor", "load_tower_state_dict", "register", "REGISTERED_IN"]


def register() -> tuple[str, ...]:
    """Register the backbone and the lr-decay constructor with mmdet and/or mmseg (idempotent);
    returns the scopes registered in. Fails naming the install command when neither is installed."""
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


REGISTERED_IN = register()  # for custom_imports (see above)
