"""The model's own contract: presets and configs, loss masking, generation arguments."""
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from florence import ConfigError, Florence2Config, Florence2ForConditionalGeneration
from florence.registry import MODELS

# fine-tuning configs start from the hub checkpoints: tests/engine/test_finetune_configs.py runs them;
# mmdet/mmseg configs (configs/downstream/): tests/downstream/test_configs.py
CONFIGS = sorted(str(p) for p in (Path(__file__).parents[2] / "configs").rglob("*.py") if "finetune" not in p.name
                 and p.parent.name != "finetune" and "downstream" not in p.parts)

# parameter counts from the spec (vision tower / encoder-decoder), in millions
SPEC_SIZES = {"base": (90, 140), "large": (360, 410)}


def count(module):
    return sum(p.numel() for p in module.parameters()) / 1e6


@pytest.mark.parametrize("preset", ["base", "large"])
def test_preset_sizes_match_the_spec(preset):
    with torch.device("meta"):
        m = Florence2ForConditionalGeneration(Florence2Config.preset(preset))
    vision, text = SPEC_SIZES[preset]
    assert count(m.vision_tower) == pytest.approx(vision, rel=0.03)
    assert count(m.language_model) == pytest.approx(text, rel=0.05)


def test_tiny_is_a_few_million_parameters(tokenizer):
    assert 1 < count(Florence2ForConditionalGeneration(Florence2Config.preset("tiny", vocab_size=len(tokenizer)))) < 10


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: Path(p).name)
def test_every_config_builds(path):
    """Every config's model builds (big ones on the meta device), and a training config's datasets
    build and yield a sample."""
    from florence.data import ImageTasks
    from florence.engine import Florence2Model
    from florence.registry import DATASETS

    cfg = Config.fromfile(path)
    text = Path(path).read_text()
    assert text.lstrip().startswith('"""'), "every config opens with a docstring"
    if "annotators" in cfg:  # a data engine config: its datasets build, its training config is a file
        for spec in (cfg.images, cfg.evaluate.dataset):
            assert len(DATASETS.build(spec)) > 0
        assert (Path(__file__).parents[2] / cfg.train.config).is_file()
        return
    if "model" not in cfg:  # a runtime or schedule fragment: it loads, and is used by full configs
        assert any(k in cfg for k in ("default_hooks", "optim_wrapper"))
        return
    wrapper = cfg.model["type"] in (Florence2Model, "Florence2Model")
    with torch.device("cpu" if wrapper else "meta"):  # the wrapper trains tiny models: build it for real
        model = MODELS.build(cfg.model)
    assert isinstance(model, Florence2Model if wrapper else Florence2ForConditionalGeneration)
    if "train_dataloader" in cfg:
        assert "Command:" in text and "Expected" in text
        for key in ("train_dataloader", "val_dataloader", "test_dataloader"):
            dataset = DATASETS.build(cfg[key].dataset)
            sample = dataset[0]
            group = sample["data_samples"]  # one sample, or an image's several (ImageTasks)
            samples = group.samples if isinstance(group, ImageTasks) else [group]
            assert sample["inputs"].ndim == 3 and samples and all(s.target is not None for s in samples)


@pytest.mark.parametrize("dialect", ["native", "microsoft"])
@pytest.mark.parametrize("preset", ["tiny", "base", "large"])
def test_config_dialect_round_trip(preset, dialect):
    cfg = Florence2Config.preset(preset)
    assert Florence2Config.from_dict(cfg.to_dict(dialect)) == cfg


@pytest.mark.parametrize("change,match", [
    (dict(num_groups=(1, 2, 4, 4)), "num_groups"),
    (dict(patch_size=(7, 2, 2, 2)), "patch_size"),
    (dict(depths=(1, 1, 1)), "one per stage"),
    (dict(num_heads=(3, 2, 4, 8), num_groups=(3, 2, 4, 8)), "not divisible"),
])
def test_bad_vision_config(change, match):
    d = Florence2Config.preset("tiny").to_dict("native")
    for k, v in change.items():
        d["vision_config"][k] = list(v)
    with pytest.raises(ConfigError, match=match):
        Florence2Config.from_dict(d)


@pytest.mark.parametrize("dialect", ["native", "microsoft"])
def test_preset_vision_overrides_round_trip(dialect):
    """``preset(..., vision={...})`` (the main job's 8x8 windows) builds a tower of that shape and
    survives both checkpoint dialects."""
    cfg = Florence2Config.from_dict({"preset": "tiny", "vision": {"window_size": 8}, "vocab_size": 500})
    assert cfg.vision.window_size == 8 and cfg.vision.embed_dims == Florence2Config.preset("tiny").vision.embed_dims
    assert Florence2Config.from_dict(cfg.to_dict(dialect)) == cfg
    tower = Florence2ForConditionalGeneration(cfg).vision_tower
    assert tower.stages[0].blocks[0].spatial_block.window_size == (8, 8)
    with pytest.raises(ConfigError, match="not VisionConfig fields"):
        Florence2Config.preset("tiny", vision={"window": 8})


def test_other_config_errors():
    with pytest.raises(ConfigError, match="valid presets"):
        Florence2Config.preset("huge")
    with pytest.raises(ConfigError, match="vision_config"):
        Florence2Config.from_dict({"text_config": {}})
    d = Florence2Config.preset("tiny").to_dict("microsoft")
    d["vision_config"]["projection_dim"] = 64
    with pytest.raises(ConfigError, match="projection_dim"):
        Florence2Config.from_dict(d)
    d = Florence2Config.preset("tiny").to_dict("microsoft")
    d["vision_config"]["visual_temporal_embedding"]["type"] = "LEARNED"
    with pytest.raises(ConfigError, match="COSINE"):
        Florence2Config.from_dict(d)


@pytest.fixture(scope="module")
def tiny(oracle):
    return Florence2ForConditionalGeneration.from_pretrained(oracle[1])


@torch.no_grad()
def test_pad_and_ignored_labels_never_count(tiny):
    torch.manual_seed(0)
    pixels = torch.randn(1, 3, 768, 768)
    prompt = torch.tensor([[0, 40, 50, 2]])
    labels = torch.tensor([[0, 300, 301, 302, 2]])
    base = tiny(pixels, prompt, labels=labels)
    padded = tiny(pixels, prompt, labels=torch.cat([labels, torch.tensor([[1, 1, 1]])], 1))
    ignored = tiny(pixels, prompt, labels=torch.cat([labels, torch.tensor([[-100, -100]])], 1))
    assert torch.allclose(base.loss, padded.loss, atol=1e-6) and torch.allclose(base.loss, ignored.loss, atol=1e-6)
    manual = torch.nn.functional.cross_entropy(base.logits[0], labels[0])
    assert torch.allclose(base.loss, manual, atol=1e-6)
    assert base.loss > 0.1


def test_loss_backward_reaches_every_part(tiny, tokenizer):
    model = Florence2ForConditionalGeneration(tiny.config)
    model.load_state_dict(tiny.state_dict())
    model.train()
    out = model(torch.randn(1, 3, 384, 384), torch.tensor([[0, 40, 2]]), labels=torch.tensor([[0, 30, 2]]))
    out.loss.backward()
    for name in ("vision_tower.stem.conv.weight", "image_projection", "image_pos_embed.row_embeddings.weight",
                 "language_model.model.shared.weight", "language_model.model.encoder.layers.0.fc1.weight"):
        assert model.get_parameter(name).grad.abs().sum() > 0, name


@torch.no_grad()
def test_generation_arguments_pass_through(tiny):
    pixels, prompt = torch.randn(1, 3, 768, 768), torch.tensor([[0, 40, 50, 2]])
    out = tiny.generate(pixels, prompt, num_beams=3, max_new_tokens=6, min_new_tokens=6,
                        output_scores=True, return_dict_in_generate=True)
    assert out.sequences.shape == (1, 7) and out.sequences_scores is not None and len(out.scores) == 6
    assert out.sequences[0, :2].tolist() == [2, 0]  # decoder start, forced <s>
    greedy = tiny.generate(pixels, prompt, num_beams=1, max_new_tokens=5)
    assert greedy.shape[1] <= 7


def test_drop_path_follows_florence_schedule():
    cfg = Florence2Config.preset("tiny")
    cfg.vision.drop_path_rate = 0.1
    m = Florence2ForConditionalGeneration(cfg)
    rates = [getattr(getattr(unit, kind).drop_path1, "drop_prob", 0.0)
             for stage in m.vision_tower.stages for unit in stage.blocks for kind in ("spatial_block", "channel_block")]
    assert rates == pytest.approx(torch.linspace(0, 0.1, 8).tolist())
