"""Checkpoint I/O: both published layouts, sharded and .bin files, save/load round trips, and the
errors a user meets with a bad file or a mismatched config."""
import json
import shutil

import pytest
import timm.models.davit as timm_davit
import torch
from safetensors.torch import load_file, save_file

from florence import CheckpointError, Florence2ForConditionalGeneration
from florence.checkpoint import convert_state_dict, detect_layout, read_state_dict


@pytest.fixture(scope="module")
def model(oracle):
    return Florence2ForConditionalGeneration.from_pretrained(oracle[1])


def assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]), k


def test_layout_detection(oracle):
    _, native, microsoft = oracle
    assert detect_layout(load_file(native / "model.safetensors")) == "native"
    assert detect_layout(load_file(microsoft / "model.safetensors")) == "microsoft"


def test_microsoft_tower_keys_match_timm_converter(oracle):
    """Our Microsoft -> florence mapping of the tower agrees with timm's own converter."""
    state = load_file(oracle[2] / "model.safetensors")
    ours = {k[len("vision_tower."):] for k in convert_state_dict(state, "microsoft", "florence")
            if k.startswith("vision_tower.")}
    timms = set(timm_davit._convert_florence2(state, None))
    assert ours == timms and len(ours) > 50


@pytest.mark.parametrize("src", ["native", "microsoft"])
@pytest.mark.parametrize("dst", ["native", "microsoft"])
def test_save_load_round_trip_bit_exact(model, oracle, tmp_path, src, dst):
    loaded = Florence2ForConditionalGeneration.from_pretrained(oracle[1] if src == "native" else oracle[2])
    assert_same_weights(model, loaded)  # both layouts give the very same model
    loaded.save_pretrained(tmp_path, layout=dst)
    again = Florence2ForConditionalGeneration.from_pretrained(tmp_path)
    assert_same_weights(loaded, again)
    assert again.config == loaded.config
    assert detect_layout(load_file(tmp_path / "model.safetensors")) == dst


def test_native_save_is_readable_by_transformers(model, tmp_path, tokenizer):
    from transformers import Florence2ForConditionalGeneration as HF

    model.save_pretrained(tmp_path)
    hf = HF.from_pretrained(tmp_path).eval()
    pixels = torch.randn(1, 3, 768, 768)
    ids = tokenizer(["What does the image describe?"], return_tensors="pt")["input_ids"]
    image = torch.full((1, 577), hf.config.image_token_id)
    dec = torch.tensor([[2, 0, 5, 6]])
    with torch.no_grad():
        ref = hf(input_ids=torch.cat([image, ids], 1), pixel_values=pixels, decoder_input_ids=dec).logits
        got = model(pixels, ids, decoder_input_ids=dec).logits
    assert (ref - got).abs().max() < 1e-4


def test_bf16_round_trip_bit_exact(model, tmp_path):
    model.save_pretrained(tmp_path / "fp32")
    m = Florence2ForConditionalGeneration.from_pretrained(tmp_path / "fp32", dtype=torch.bfloat16)
    assert m.dtype == torch.bfloat16
    m.save_pretrained(tmp_path / "bf16")
    assert_same_weights(m, Florence2ForConditionalGeneration.from_pretrained(tmp_path / "bf16", dtype=torch.bfloat16))


def test_logits_bias_is_never_dropped(oracle, tmp_path):
    m = Florence2ForConditionalGeneration.from_pretrained(oracle[2])
    with torch.no_grad():
        m.language_model.final_logits_bias.normal_()
    with pytest.raises(CheckpointError, match="final_logits_bias is non-zero.*'microsoft' layout"):
        m.save_pretrained(tmp_path / "native")
    m.save_pretrained(tmp_path / "ms", layout="microsoft")
    assert_same_weights(m, Florence2ForConditionalGeneration.from_pretrained(tmp_path / "ms"))


def test_sharded_safetensors(model, oracle, tmp_path):
    hf = oracle[0]
    hf.save_pretrained(tmp_path, max_shard_size="500KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    assert len(list(tmp_path.glob("model-*.safetensors"))) > 1
    assert_same_weights(model, Florence2ForConditionalGeneration.from_pretrained(tmp_path))


def test_pytorch_bin_loads_with_weights_only(model, oracle, tmp_path, monkeypatch):
    _, native, _ = oracle
    shutil.copy(native / "config.json", tmp_path / "config.json")
    torch.save(load_file(native / "model.safetensors"), tmp_path / "pytorch_model.bin")
    seen = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: seen.append(k.get("weights_only")) or real_load(*a, **k))
    assert_same_weights(model, Florence2ForConditionalGeneration.from_pretrained(tmp_path))
    assert seen == [True]


def test_pickle_with_code_is_refused(oracle, tmp_path):
    shutil.copy(oracle[1] / "config.json", tmp_path / "config.json")
    torch.save({"w": torch.zeros(1), "evil": print}, tmp_path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="pytorch_model.bin"):
        Florence2ForConditionalGeneration.from_pretrained(tmp_path)


def test_truncated_file(oracle, tmp_path):
    shutil.copy(oracle[1] / "config.json", tmp_path / "config.json")
    data = (oracle[1] / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*truncated"):
        Florence2ForConditionalGeneration.from_pretrained(tmp_path)


def test_file_of_another_model(oracle, tmp_path):
    from transformers import BertConfig, BertModel

    shutil.copy(oracle[1] / "config.json", tmp_path / "config.json")
    bert = BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64))
    save_file(bert.state_dict(), tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"not a Florence-2 checkpoint.*embeddings"):
        Florence2ForConditionalGeneration.from_pretrained(tmp_path)


def test_config_does_not_match_weights(oracle, tmp_path):
    shutil.copy(oracle[1] / "model.safetensors", tmp_path / "model.safetensors")
    cfg = json.loads((oracle[1] / "config.json").read_text())
    cfg["text_config"]["encoder_layers"] = 1  # the file has 2
    cfg["text_config"]["d_model"] = 64  # and width 128
    cfg["vision_config"]["projection_dim"] = 64
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError) as err:
        Florence2ForConditionalGeneration.from_pretrained(tmp_path)
    msg = str(err.value)
    assert "unexpected keys" in msg and "language_model.model.encoder.layers.1." in msg
    assert "mis-shaped keys" in msg and "file (" in msg and "vs model (" in msg


def test_missing_tensor_is_named(oracle, tmp_path):
    shutil.copy(oracle[1] / "config.json", tmp_path / "config.json")
    state = load_file(oracle[1] / "model.safetensors")
    del state["model.vision_tower.blocks.2.0.channel_block.ffn.fc1.weight"]
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"missing keys 1: \['vision_tower.stages.2.blocks.0.channel_block.mlp"):
        Florence2ForConditionalGeneration.from_pretrained(tmp_path)


def test_missing_folder_and_files(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint folder"):
        Florence2ForConditionalGeneration.from_pretrained(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="has no config.json"):
        Florence2ForConditionalGeneration.from_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="holds no weights"):
        read_state_dict(tmp_path)


def test_hub_id_downloads_through_huggingface_hub(oracle, monkeypatch):
    import huggingface_hub

    asked = []
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo, **k: asked.append(repo) or str(oracle[2]))
    model = Florence2ForConditionalGeneration.from_pretrained("microsoft/Florence-2-base")
    assert asked == ["microsoft/Florence-2-base"] and model.config.vision.embed_dims == (32, 64, 128, 256)


def test_hub_unreachable_says_how_to_pass_a_folder(monkeypatch):
    import huggingface_hub

    def offline(repo, **kwargs):
        raise huggingface_hub.errors.LocalEntryNotFoundError("cannot reach the Hub")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(CheckpointError, match=r"could not download 'microsoft/Florence-2-large'.*pass the folder"):
        Florence2ForConditionalGeneration.from_pretrained("microsoft/Florence-2-large")


def test_folder_atomic_replaces_a_folder_whole_or_not_at_all(tmp_path):
    """An exported model folder appears complete when its writer ends, and an error mid-write leaves
    the previous folder as it was and no work folder; a killed writer's leftovers are cleared."""
    from florence.atomic import folder_atomic

    target = tmp_path / "model"
    with folder_atomic(target) as tmp:
        assert not target.exists()
        (tmp / "config.json").write_text("1")
    assert [p.name for p in target.iterdir()] == ["config.json"]
    with pytest.raises(RuntimeError):
        with folder_atomic(target) as tmp:
            (tmp / "config.json").write_text("2")
            raise RuntimeError("killed mid-export")
    assert (target / "config.json").read_text() == "1" and sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    (tmp_path / ".model.tmp").mkdir()  # what a SIGKILL leaves
    (tmp_path / ".model.tmp" / "config.json").write_text("partial")
    with folder_atomic(target) as tmp:
        assert not (tmp / "config.json").exists()
        (tmp / "config.json").write_text("3")
        (tmp / "tokenizer.json").write_text("3")
    assert sorted(p.name for p in target.iterdir()) == ["config.json", "tokenizer.json"] and sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    (target / "notes.txt").write_text("mine")  # a file the writer does not write: never deleted
    with pytest.raises(FileExistsError, match=r"model holds files that the new model would not: notes.txt"):
        with folder_atomic(target) as tmp:
            (tmp / "config.json").write_text("4")
            (tmp / "tokenizer.json").write_text("4")
    assert sorted(p.name for p in target.iterdir()) == ["config.json", "notes.txt", "tokenizer.json"]
    assert (target / "config.json").read_text() == "3"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_the_older_names_warn_and_still_work(oracle, tmp_path):
    from florence.checkpoint import load_pretrained, save_pretrained

    with pytest.deprecated_call(match=r"use Florence2ForConditionalGeneration.from_pretrained\(path\)"):
        model = load_pretrained(Florence2ForConditionalGeneration, oracle[1])
    with pytest.deprecated_call(match=r"use model.save_pretrained\(folder, layout=...\)"):
        save_pretrained(model, tmp_path / "again")
    again = Florence2ForConditionalGeneration.from_pretrained(tmp_path / "again")
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), model.state_dict().values()))
