"""LayerDecayOptimWrapperConstructor assigns the learning rates its docstring documents, and is built
by name from mmdet's and mmseg's registries."""
import pytest
import torch
import torch.nn as nn
from mmengine.optim import build_optim_wrapper

from florence import ConfigError
from florence.downstream import Florence2DaViT, LayerDecayOptimWrapperConstructor

LR, WD, D = 1e-4, 0.05, 0.9


class Detector(nn.Module):
    def __init__(self, **backbone):
        super().__init__()
        self.backbone = Florence2DaViT(**backbone)
        self.neck = nn.Conv2d(1024, 256, 1)


def documented_exponent(name: str) -> int:
    """The docstring's table for DaViT-B (depths 1, 1, 9, 1): stem d^13; stage 1 d^12; stage 2 d^11;
    stage 3's downsampler and first unit d^10 ... its last unit d^2; stage 4 d^1; the rest d^0."""
    parts = name.split(".")
    if name.startswith("backbone.vision_tower.stem."):
        return 13
    if name.startswith("backbone.vision_tower.stages."):
        stage = int(parts[3])
        if stage == 2:
            unit = int(parts[5]) if parts[4] == "blocks" else 0
            return 10 - unit
        return {0: 12, 1: 11, 3: 1}[stage]
    return 0


def _groups_by_param(wrapper):
    return {id(p): g for g in wrapper.optimizer.param_groups for p in g["params"]}


@pytest.mark.parametrize("frozen_stages", [-1, 1])
def test_documented_lr_for_every_stage(frozen_stages):
    model = Detector(arch="base", frozen_stages=frozen_stages)
    wrapper = LayerDecayOptimWrapperConstructor(
        dict(type="OptimWrapper", optimizer=dict(type="AdamW", lr=LR, weight_decay=WD)),
        dict(decay_rate=D))(model)
    by_param = _groups_by_param(wrapper)
    seen_exponents = set()
    for name, p in model.named_parameters():
        if not p.requires_grad:
            assert id(p) not in by_param, f"frozen {name} is in the optimizer"
            continue
        group = by_param[id(p)]
        exponent = documented_exponent(name)
        seen_exponents.add(exponent)
        assert group["lr"] == pytest.approx(LR * D ** exponent), name
        assert group["weight_decay"] == (WD if p.ndim > 1 else 0.0), name
    frozen = {13, 12} if frozen_stages == 1 else set()
    assert seen_exponents == set(range(14)) - frozen  # every layer id occurs
    assert sum(len(g["params"]) for g in wrapper.optimizer.param_groups) == sum(
        p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("scope", ["mmdet", "mmseg"])
def test_built_by_name_in_each_library(scope):
    import importlib

    registry = importlib.import_module(f"{scope}.registry")
    model = Detector(arch="tiny")
    model.neck = nn.Conv2d(256, 8, 1)
    cfg = dict(type="OptimWrapper", optimizer=dict(type="SGD", lr=0.5, momentum=0.9),
               constructor="LayerDecayOptimWrapperConstructor", paramwise_cfg=dict(decay_rate=0.5))
    with registry.OPTIM_WRAPPER_CONSTRUCTORS.switch_scope_and_registry(scope):
        wrapper = build_optim_wrapper(model, cfg)
    by_param = _groups_by_param(wrapper)
    # tiny: 4 units; stem 0.5^5, stage s (unit s) 0.5^(4 - s), the neck 0.5^0
    assert by_param[id(model.backbone.vision_tower.stem.conv.weight)]["lr"] == pytest.approx(0.5 * 0.5 ** 5)
    for s in range(4):
        p = next(model.backbone.vision_tower.stages[s].blocks.parameters())
        assert by_param[id(p)]["lr"] == pytest.approx(0.5 * 0.5 ** (4 - s))
    assert by_param[id(model.neck.weight)]["lr"] == 0.5
    assert by_param[id(model.backbone.out_norms[0].weight)]["lr"] == 0.5


def test_bad_settings():
    optim = dict(type="OptimWrapper", optimizer=dict(type="AdamW", lr=LR))
    with pytest.raises(ConfigError, match="unknown paramwise_cfg keys"):
        LayerDecayOptimWrapperConstructor(optim, dict(decay_rate=0.9, custom_keys={}))
    with pytest.raises(ConfigError, match="decay_rate must be in"):
        LayerDecayOptimWrapperConstructor(optim, dict(decay_rate=1.5))
    with pytest.raises(ConfigError, match="expected a Florence2DaViT"):
        LayerDecayOptimWrapperConstructor(optim, dict(decay_rate=0.9))(nn.Sequential(nn.Linear(2, 2)))
