"""Shared fixtures: an offline tokenizer, and one tiny random Florence-2 built by transformers' native
implementation (the oracle), saved in its own layout and converted here, independently of
florence's converter, into Microsoft's hub layout."""
import importlib.util
import json
import re

import pytest
import torch
from hypothesis import settings

from helpers import randomize_  # noqa: F401  (tests/ is on sys.path: helpers.py beside this file)

# property tests: the same examples every run in CI (a failure is a defect to fix, never chance), and a
# long random search for whoever changes a parser: pytest ... --hypothesis-profile=fuzz
settings.register_profile("ci", max_examples=300, derandomize=True, deadline=None)
settings.register_profile("fuzz", max_examples=20_000, deadline=None)
settings.load_profile("ci")

TEXTS = [
    "What does the image describe?", "Describe in detail what is shown in the image.",
    "Locate the objects with category name in the image.", "What is the text in the image?",
    "a red square next to a blue circle", "a green triangle above the yellow star",
    "Locate the phrases in the caption: a cat on a mat",
]

# transformers-native vision config of the tiny model (the same sizes as florence's `tiny` preset)
TINY_VISION = dict(embed_dim=[32, 64, 128, 256], depths=[1, 1, 1, 1], num_heads=[1, 2, 4, 8],
                   num_groups=[1, 2, 4, 8], window_size=12, projection_dim=128, drop_path_rate=0.0)
TINY_TEXT = dict(d_model=128, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                 decoder_attention_heads=4, encoder_ffn_dim=512, decoder_ffn_dim=512, dropout=0.0,
                 attention_dropout=0.0, max_position_embeddings=1024, scale_embedding=False)


@pytest.fixture(scope="session")
def tokenizer():
    from florence.processing import build_tokenizer

    return build_tokenizer(TEXTS, vocab_size=400)


def native_to_microsoft(state):
    """transformers-native keys -> Microsoft hub keys, written from the spec's table."""
    out = {}
    for k, v in state.items():
        if k.startswith("model.vision_tower."):
            k = "vision_tower." + k[len("model.vision_tower."):]
            k = re.sub(r"^vision_tower\.convs\.(\d+)\.conv\.", r"vision_tower.convs.\1.proj.", k)
            k = re.sub(r"\.(conv1|conv2)\.(weight|bias)$", r".\1.fn.dw.\2", k)
            k = k.replace(".spatial_block.norm1.", ".spatial_block.window_attn.norm.")
            k = k.replace(".channel_block.norm1.", ".channel_block.channel_attn.norm.")
            k = re.sub(r"\.(window_attn|channel_attn)\.(qkv|proj)\.", r".\1.fn.\2.", k)
            k = k.replace(".norm2.", ".ffn.norm.")
            k = re.sub(r"\.ffn\.(fc1|fc2)\.", r".ffn.fn.net.\1.", k)
        elif k == "model.multi_modal_projector.image_projection.weight":
            k, v = "image_projection", v.t().contiguous()
        elif k.startswith("model.multi_modal_projector."):
            k = k[len("model.multi_modal_projector."):].replace("image_position_embed.", "image_pos_embed.")
        elif k.startswith("model.language_model."):
            k = "language_model.model." + k[len("model.language_model."):]
        elif k == "lm_head.weight":
            k = "language_model.lm_head.weight"
        else:
            raise AssertionError(f"unexpected native key {k}")
        out[k] = v
    return out


def microsoft_config(native_cfg: dict) -> dict:
    v, t = native_cfg["vision_config"], dict(native_cfg["text_config"])
    t.update(model_type="florence2_language", no_repeat_ngram_size=3, num_beams=3, forced_bos_token_id=0)
    return dict(
        model_type="florence2", architectures=["Florence2ForConditionalGeneration"],
        vocab_size=t["vocab_size"], projection_dim=v["projection_dim"], text_config=t,
        vision_config=dict(
            model_type="davit", dim_embed=v["embed_dim"], num_heads=v["num_heads"], num_groups=v["num_groups"],
            depths=v["depths"], window_size=v["window_size"], patch_size=v["patch_size"],
            patch_stride=v["patch_stride"], patch_padding=v["patch_padding"], patch_prenorm=v["patch_prenorm"],
            drop_path_rate=v["drop_path_rate"], projection_dim=v["projection_dim"], enable_checkpoint=False,
            image_pos_embed=dict(type="learned_abs_2d", max_pos_embeddings=50),
            visual_temporal_embedding=dict(type="COSINE", max_temporal_embeddings=100),
            image_feature_source=["spatial_avg_pool", "temporal_avg_pool"]),
    )


@pytest.fixture(scope="session")
def oracle(tokenizer, tmp_path_factory):
    """(transformers model, native-layout folder, Microsoft-layout folder) on the same random weights.

    As published, the native vocabulary adds an <image> token and is padded to a multiple of 64."""
    from safetensors.torch import load_file, save_file
    from transformers import Florence2Config, Florence2ForConditionalGeneration

    image_token_id = len(tokenizer)
    vocab = (image_token_id + 1 + 63) // 64 * 64
    cfg = Florence2Config(vision_config=TINY_VISION, text_config=dict(model_type="bart", vocab_size=vocab, **TINY_TEXT),
                          image_token_id=image_token_id)
    torch.manual_seed(0)
    hf = randomize_(Florence2ForConditionalGeneration(cfg)).eval()
    native = tmp_path_factory.mktemp("native")
    hf.save_pretrained(native)

    microsoft = tmp_path_factory.mktemp("microsoft")
    state = native_to_microsoft(load_file(native / "model.safetensors"))
    state["language_model.final_logits_bias"] = torch.zeros(1, vocab)
    save_file(state, microsoft / "model.safetensors", metadata={"format": "pt"})
    native_cfg = json.loads((native / "config.json").read_text())
    (microsoft / "config.json").write_text(json.dumps(microsoft_config(native_cfg)))
    return hf, native, microsoft


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory):
    """florence's tiny preset with strong random weights and the offline tokenizer, saved together
    as a checkpoint folder (what `florence.pipeline(path)` and the CLI read)."""
    from florence import Florence2Config, Florence2ForConditionalGeneration, build_tokenizer

    tok = build_tokenizer(TEXTS, vocab_size=400)
    torch.manual_seed(0)
    model = randomize_(Florence2ForConditionalGeneration(Florence2Config.preset("tiny", vocab_size=len(tok))))
    folder = tmp_path_factory.mktemp("tiny")
    model.save_pretrained(folder)
    tok.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="session")
def tiny_pipeline(tiny_folder):
    import florence

    return florence.pipeline(tiny_folder)


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` need a CUDA device: skipped without one (``pytest -m gpu`` on a GPU machine)."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (run `pytest -m gpu` on a machine with one)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


DOWNSTREAM = importlib.util.find_spec("mmdet") is not None and importlib.util.find_spec("mmseg") is not None


def pytest_ignore_collect(collection_path, config):
    """tests/downstream needs mmdet and mmseg (the downstream extra): not collected without them."""
    if DOWNSTREAM or not collection_path.is_relative_to(config.rootpath):
        return None
    return True if collection_path.relative_to(config.rootpath).parts[:2] == ("tests", "downstream") else None


def pytest_terminal_summary(terminalreporter):
    if not DOWNSTREAM:
        terminalreporter.write_line("tests/downstream not run: the downstream extra (mmdet, mmseg) is not installed; "
                                    "bash tools/install.sh --downstream installs it")


def _saved_activation_bytes(fn):
    """``fn()`` and the bytes autograd saved for its backward outside checkpointed regions (what
    checkpointing frees: their activations are recomputed in the backward pass instead)."""
    total = [0]

    def pack(t):
        total[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, total[0]


@pytest.fixture
def saved_activation_bytes():
    return _saved_activation_bytes


@pytest.fixture(scope="session")
def trained_folder(tmp_path_factory):
    """The tiny preset overfitted on <OD> and <OPEN_VOCABULARY_DETECTION> of eight 64 px scenes
    (``helpers.train_tiny``): confident boxes with labels, for tests that need regions to work on.
    Returns (folder, samples)."""
    from helpers import train_tiny

    folder = tmp_path_factory.mktemp("trained") / "model"
    return folder, train_tiny(folder, ("<OD>", "<OPEN_VOCABULARY_DETECTION>"), scenes=8)


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray of 2 CPUs (the ``ray`` extra) for a module's tests of ``--engine ray``: its address."""
    ray = pytest.importorskip("ray", reason="the ray extra is not installed (bash tools/install.sh --ray)")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()
