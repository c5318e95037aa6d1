"""Florence2DaViT: registration, any input size, init from every checkpoint kind (weights equal the
checkpoint's tower, features equal the core model's tower and transformers' native tower, the
independent oracle), frozen stages, gradient checkpointing, drop-path, clear errors."""
import subprocess
import sys

import pytest
import torch

from florence import CheckpointError, ConfigError, Florence2ForConditionalGeneration
from florence.downstream import Florence2DaViT, load_tower_state_dict
from florence.accel.davit import davit_features

TINY_DIMS = [32, 64, 128, 256]


def test_import_florence_does_not_import_openmmlab_and_the_adapter_registers():
    code = """
import sys
import florence, florence.engine, florence.checkpoint, florence.data, florence.evaluation
loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('mmdet', 'mmseg', 'mmcv', 'florence.downstream'))
assert not loaded and 'florence.downstream' not in sys.modules, loaded
import florence.downstream as d
assert d.REGISTERED_IN == ('mmdet', 'mmseg'), d.REGISTERED_IN
import mmdet.registry, mmseg.registry
from mmengine.registry import DefaultScope
for scope in (mmdet.registry, mmseg.registry):
    assert scope.MODELS.get('Florence2DaViT') is d.Florence2DaViT
    assert scope.OPTIM_WRAPPER_CONSTRUCTORS.get('LayerDecayOptimWrapperConstructor') is d.LayerDecayOptimWrapperConstructor
# dict-style configs build it by name within each library's scope
for name, registry in (('mmdet', mmdet.registry.MODELS), ('mmseg', mmseg.registry.MODELS)):
    with registry.switch_scope_and_registry(name) as r:
        assert type(r.build(dict(type='Florence2DaViT', arch='tiny'))) is d.Florence2DaViT
print('ok')
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.splitlines()[-1] == "ok", out.stderr[-3000:]


# ---- shapes and features -------------------------------------------------------------------------
@torch.no_grad()
@pytest.mark.parametrize("size", [(100, 70), (64, 64), (203, 131)])
def test_any_input_size_matches_the_core_model_and_transformers(oracle, size):
    """Stage grids 12 does not divide (25x18, 13x9, ... at 100x70) need window padding: the
    backbone's stage outputs equal transformers' native DaViT (an independent implementation) and
    the core model's tower on the same weights."""
    hf, native, _ = oracle
    backbone = Florence2DaViT(arch="tiny", out_norms=False, init_cfg=dict(type="Pretrained", checkpoint=str(native)))
    backbone.init_weights()
    backbone.eval()
    core = Florence2ForConditionalGeneration.from_pretrained(native)
    torch.manual_seed(0)
    x = torch.randn(2, 3, *size)
    feats = backbone(x)
    h, w = size
    expected_shapes = []
    for i, c in enumerate(TINY_DIMS):
        h, w = (-(-h // 4), -(-w // 4)) if i == 0 else (-(-h // 2), -(-w // 2))
        expected_shapes.append((2, c, h, w))
    assert [tuple(f.shape) for f in feats] == expected_shapes

    stage_outputs = []  # transformers' tower: the output of each stage's last block
    hooks = [blocks[-1].register_forward_hook(lambda m, i, o: stage_outputs.append(o)) for blocks in hf.model.vision_tower.blocks]
    try:
        last = hf.model.vision_tower(x).last_hidden_state
    finally:
        for hook in hooks:
            hook.remove()
    assert torch.equal(stage_outputs[-1], last)
    for ours, ref in zip(feats, stage_outputs):
        assert ours.shape == ref.shape and (ours - ref).abs().max() < 1e-5 * ref.abs().max()  # fp32 rounding
    # the core model runs the same tower through its channels-last fast path (oneDNN linears)
    core_feats = davit_features(core.vision_tower, x).permute(0, 3, 1, 2)
    assert (feats[-1] - core_feats).abs().max() < 1e-5 * core_feats.abs().max()


@torch.no_grad()
def test_out_indices_and_out_norms():
    torch.manual_seed(0)
    backbone = Florence2DaViT(arch="tiny", out_indices=(1, 3)).eval()
    x = torch.randn(1, 3, 64, 96)
    feats = backbone(x)
    raw = backbone.vision_tower.forward_intermediates(x, intermediates_only=True)
    assert backbone.out_channels == [64, 256] and [f.shape[1] for f in feats] == [64, 256]
    for f, r, norm in zip(feats, (raw[1], raw[3]), backbone.out_norms):
        ref = torch.nn.functional.layer_norm(r.permute(0, 2, 3, 1), r.shape[1:2], norm.weight, norm.bias).permute(0, 3, 1, 2)
        assert torch.allclose(f, ref, atol=1e-4)


# ---- initialisation ----------------------------------------------------------------------------
def _equal_to_tower(backbone, tower):
    ours, ref = backbone.vision_tower.state_dict(), tower.state_dict()
    assert ours.keys() == ref.keys()
    return all(torch.equal(ours[k], ref[k]) for k in ref)


@pytest.fixture(scope="module")
def trained_pth(tmp_path_factory):
    """What florence's tools/train.py writes for the Florence-2 model wrapper: a .pth whose state dict
    holds the model under the wrapper's ``model.`` prefix (florence layout)."""
    from florence.engine import Florence2Model

    torch.manual_seed(3)
    wrapper = Florence2Model(model=dict(preset="tiny"),
                             tokenizer=dict(texts_from="florence.data.synthetic:vocabulary_texts", vocab_size=300))
    path = tmp_path_factory.mktemp("pth") / "iter_10.pth"
    torch.save({"meta": {"iter": 10}, "state_dict": wrapper.state_dict(), "message_hub": {}}, path)
    return path, wrapper.model.vision_tower


@pytest.mark.parametrize("kind", ["microsoft", "native", "saved", "pth"])
def test_init_takes_the_checkpoints_tower(kind, oracle, tiny_folder, trained_pth):
    hf, native, microsoft = oracle
    path = {"microsoft": microsoft, "native": native, "saved": tiny_folder, "pth": trained_pth[0]}[kind]
    backbone = Florence2DaViT(arch="tiny", init_cfg=dict(type="Pretrained", checkpoint=str(path)))
    before = {k: v.clone() for k, v in backbone.vision_tower.state_dict().items()}
    backbone.init_weights()
    tower = trained_pth[1] if kind == "pth" else Florence2ForConditionalGeneration.from_pretrained(path).vision_tower
    assert _equal_to_tower(backbone, tower)
    assert not all(torch.equal(before[k], v) for k, v in backbone.vision_tower.state_dict().items())
    expected_layout = {"microsoft": "microsoft", "native": "native", "saved": "native", "pth": "florence"}[kind]
    assert load_tower_state_dict(path)[1] == expected_layout


def test_wrong_size_tower_names_the_tensors(oracle):
    backbone = Florence2DaViT(arch=dict(embed_dims=(32, 64, 128, 512), depths=(1, 1, 1, 1), num_heads=(1, 2, 4, 8)),
                              init_cfg=dict(type="Pretrained", checkpoint=str(oracle[1])))
    with pytest.raises(CheckpointError, match=r"does not fit Florence2DaViT's arch.*mis-shaped keys .*stages\.3"):
        backbone.init_weights()


def test_not_a_florence_checkpoint(tmp_path):
    torch.save({"state_dict": {"backbone.conv1.weight": torch.zeros(3)}}, tmp_path / "resnet.pth")
    with pytest.raises(CheckpointError, match="no Florence-2 vision tower found"):
        load_tower_state_dict(tmp_path / "resnet.pth")
    with pytest.raises(CheckpointError, match="no such checkpoint folder"):
        load_tower_state_dict(tmp_path / "missing" / "folder")


def test_file_needing_full_unpickling_is_refused(tmp_path):
    """weights_only stays on for files we did not write: a pickle of arbitrary objects is refused with
    a message saying what to do, never loaded."""
    from mmengine.logging import HistoryBuffer

    torch.save({"state_dict": {}, "message_hub": {"log": HistoryBuffer()}}, tmp_path / "foreign.pth")
    with pytest.raises(CheckpointError, match=r"weights_only=True.*save its state dict alone"):
        load_tower_state_dict(tmp_path / "foreign.pth")


@pytest.mark.parametrize("kwargs,match", [
    (dict(arch="huge"), "unknown arch 'huge'"),
    (dict(arch=dict(embed_dim=(1, 2))), "unknown arch keys"),
    (dict(out_indices=(0, 4)), "out_indices"),
    (dict(out_indices=(2, 1)), "out_indices"),
    (dict(frozen_stages=5), "frozen_stages"),
    (dict(drop_path_rate=1.5), "drop_path_rate"),
    (dict(init_cfg=dict(type="Pretrained", path="x")), "checkpoint"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        Florence2DaViT(**{"arch": "tiny", **kwargs}).init_weights()


# ---- training behaviour ------------------------------------------------------------------------
@pytest.mark.parametrize("frozen_stages", [0, 2, 4])
def test_frozen_stages(frozen_stages):
    torch.manual_seed(0)
    backbone = Florence2DaViT(arch="tiny", frozen_stages=frozen_stages, drop_path_rate=0.9)
    backbone.train()  # frozen parts stay in eval mode after .train()
    tower = backbone.vision_tower
    frozen = [tower.stem] + list(tower.stages[:frozen_stages]) + [n for i, n in enumerate(backbone.out_norms)
                                                                  if i < frozen_stages]
    trained = list(tower.stages[frozen_stages:]) + list(backbone.out_norms[frozen_stages:])
    assert all(not m.training for f in frozen for m in f.modules())
    assert all(m.training for t in trained for m in t.modules())
    assert all(not p.requires_grad for f in frozen for p in f.parameters())
    assert all(p.requires_grad for t in trained for p in t.parameters())

    x = torch.randn(2, 3, 64, 64)
    a, b = backbone(x), backbone(x)
    for i in range(frozen_stages):  # drop-path is off where frozen...
        assert torch.equal(a[i], b[i])
    assert torch.equal(a[3], b[3]) == (frozen_stages == 4)  # ... and on in the trained stages
    params = [p for p in backbone.parameters() if p.requires_grad]
    if frozen_stages == 4:  # the whole backbone, output norms included
        assert not params
        return
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    sum(f.square().mean() for f in a).backward()
    torch.optim.SGD(params, lr=0.1).step()
    for f in frozen:
        for p in f.parameters():
            assert p.grad is None
    changed = {k for k, v in backbone.state_dict().items() if not torch.equal(before[k], v)}
    frozen_names = {f"{name}.{k}" for name, module in backbone.named_modules() if module in frozen
                    for k in module.state_dict()}
    assert changed and not changed & frozen_names


def test_gradient_checkpointing_gives_the_same_outputs_and_gradients(saved_activation_bytes):
    torch.manual_seed(0)
    plain = Florence2DaViT(arch="tiny", frozen_stages=1)
    cp = Florence2DaViT(arch="tiny", frozen_stages=1, with_cp=True)
    cp.load_state_dict(plain.state_dict())
    assert all(stage.grad_checkpointing for stage in cp.vision_tower.stages)
    x = torch.randn(1, 3, 80, 72)
    grads, saved = [], []
    for model in (plain, cp):
        feats, nbytes = saved_activation_bytes(lambda: model.train()(x))
        sum(f.sum() for f in feats).backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.requires_grad})
        saved.append(nbytes)
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 0
    assert saved[1] < 0.5 * saved[0], saved  # activations of checkpointed stages are recomputed, not kept
    for n in grads[0]:
        assert torch.allclose(grads[0][n], grads[1][n], atol=1e-5), n


def test_drop_path_schedule():
    """Florence-2's schedule: linspace(0, rate, 2 * sum(depths)) over spatial, channel, spatial, ... blocks."""
    backbone = Florence2DaViT(arch="base", drop_path_rate=0.3)
    units = [u for stage in backbone.vision_tower.stages for u in stage.blocks]
    rates = [getattr(b.drop_path1, "drop_prob", 0.0) for u in units for b in (u.spatial_block, u.channel_block)]
    expected = torch.linspace(0, 0.3, 24).tolist()
    assert rates == pytest.approx(expected)
