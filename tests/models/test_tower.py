"""A vision tower other than DaViT goes through the one path florence reads towers by
(:mod:`florence.models.tower`): registered as a plugin registers it, built by the model from
``VisionConfig(tower=...)``, its features projected and decoded, accelerated == plain, saved and
loaded in florence's layout (the published layouts refuse it by name), and the downstream backbone
with multi-scale outputs, frozen stages and layer ids. Nothing outside this file knows the toy."""
import copy
import re

import pytest
import torch
import torch.nn as nn

from florence import accel
from florence.models import ConfigError, Florence2Config, Florence2ForConditionalGeneration
from florence.models.files import CheckpointError
from florence.models.tower import Tower, get_tower
from florence.registry import VISION_TOWERS


class ToyConvTower(Tower):
    """A 4x4/4 patchify convolution, then per level a 2x2/2 downsampling convolution (not on the first)
    and ``depth`` 3x3 convolutions with GELU: stride 32 over four levels, as the projector expects."""

    def check(self, vision):
        if len(vision.embed_dims) != 4:
            raise ConfigError("the toy tower has four levels")

    def build(self, vision):
        tower = nn.Module()
        dims = vision.embed_dims
        tower.patchify = nn.Conv2d(3, dims[0], 4, stride=4)
        tower.levels = nn.ModuleList(
            nn.Sequential(nn.Identity() if i == 0 else nn.Conv2d(dims[i - 1], dims[i], 2, stride=2),
                          *[nn.Sequential(nn.Conv2d(dims[i], dims[i], 3, padding=1), nn.GELU()) for _ in range(n)])
            for i, n in enumerate(vision.depths))
        return tower

    def intermediates(self, tower, pixels, indices):
        x, out = tower.patchify(pixels), []
        for i, level in enumerate(tower.levels[:max(indices) + 1]):
            x = level(x)
            if i in indices:
                out.append(x)
        return out

    def features(self, tower, pixels):
        return self.intermediates(tower, pixels, [len(tower.levels) - 1])[0].permute(0, 2, 3, 1)

    def parts(self, tower):
        return [tower.patchify, *tower.levels]

    def layer_id(self, name, vision):
        if name.startswith("patchify."):
            return 0
        m = re.match(r"levels\.(\d+)\.(\d+)\.", name)
        if not m:
            return sum(vision.depths) + 1
        first = sum(vision.depths[:int(m.group(1))])
        return first + 1 + max(int(m.group(2)) - 1, 0)  # the downsampling conv: the level's first unit

    def set_grad_checkpointing(self, tower, enable=True):
        pass


@pytest.fixture
def toy():
    VISION_TOWERS.register_module(name="toy_conv", module=ToyConvTower, force=True)
    yield Florence2Config.preset("tiny", vision=dict(tower="toy_conv", depths=(1, 1, 2, 1)), vocab_size=300)
    VISION_TOWERS.module_dict.pop("toy_conv")


def test_an_unknown_tower_is_a_config_error():
    with pytest.raises(ConfigError, match=r"tower 'nope' is not a registered tower; registered: \['davit'"):
        Florence2Config.preset("tiny", vision=dict(tower="nope"))


@torch.no_grad()
def test_the_model_runs_on_another_tower(toy, tmp_path):
    torch.manual_seed(0)
    model = Florence2ForConditionalGeneration(toy).eval()
    assert isinstance(get_tower(model.config.vision), ToyConvTower)
    assert {type(m).__module__.split(".")[0] for m in model.vision_tower.modules()} == {"torch"}  # no timm DaViT
    pixels, ids = torch.randn(2, 3, 96, 64), torch.tensor([[0, 5, 6, 2], [0, 7, 2, 1]])
    tokens = model.encode_image(pixels)
    assert tokens.shape == (2, 1 + 3 * 2, 128)  # pooled + a 3x2 grid at stride 32
    out = model.generate(pixels, ids, attention_mask=(ids != 1).long(), max_new_tokens=6, num_beams=2)
    assert out.shape[0] == 2

    fast = accel.apply(copy.deepcopy(model))  # the BART side accelerates; the toy tower stays as it is
    assert accel.is_applied(fast)
    assert torch.allclose(fast.encode_image(pixels), tokens, atol=1e-5)
    dec = torch.tensor([[2, 0, 17], [2, 0, 9]])
    ref = model(pixels, ids, decoder_input_ids=dec).logits
    assert torch.allclose(fast(pixels, ids, decoder_input_ids=dec).logits, ref, atol=1e-4)

    model.save_pretrained(tmp_path / "toy", layout="florence")
    again = Florence2ForConditionalGeneration.from_pretrained(tmp_path / "toy")
    assert again.config.vision.tower == "toy_conv"
    assert torch.equal(again(pixels, ids, decoder_input_ids=dec).logits, ref)
    for layout in ("native", "microsoft"):
        with pytest.raises(CheckpointError, match=f"'toy_conv' vision tower has no place in the published '{layout}'"):
            model.save_pretrained(tmp_path / layout, layout=layout)


@torch.no_grad()
def test_the_downstream_backbone_takes_another_tower(toy, tmp_path):
    pytest.importorskip("mmdet", reason="the downstream extra is not installed")
    from florence.downstream import Florence2DaViT

    arch = dict(tower="toy_conv", embed_dims=(32, 64, 128, 256), depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8))
    backbone = Florence2DaViT(arch=arch, out_indices=(1, 3), frozen_stages=1).eval()
    feats = backbone(torch.randn(1, 3, 128, 96))
    assert [tuple(f.shape) for f in feats] == [(1, 64, 16, 12), (1, 256, 4, 3)]  # strides 8 and 32
    frozen = [n for n, p in backbone.named_parameters() if not p.requires_grad]
    assert {n.split(".")[1] + n.split(".")[2] * n.startswith("vision_tower.levels") for n in frozen} == {"patchify", "levels0"}
    assert backbone.layer_id("vision_tower.patchify.weight") == 0
    assert backbone.layer_id("vision_tower.levels.2.2.0.weight") == 4  # level 2's second unit
    assert backbone.layer_id("vision_tower.levels.2.0.weight") == 3  # level 2's downsampling: its first unit
    assert backbone.layer_id("out_norms.0.weight") == 6

    model = Florence2ForConditionalGeneration(toy)  # its tower, saved in florence's layout, initialises the backbone
    model.save_pretrained(tmp_path / "toy", layout="florence")
    assert backbone.load_tower(tmp_path / "toy") == "florence"
    assert all(torch.equal(t, model.vision_tower.state_dict()[k]) for k, t in backbone.vision_tower.state_dict().items())
