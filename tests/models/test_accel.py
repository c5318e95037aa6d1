"""florence.accel's contract: the plain model is torch/timm/transformers modules only and exports
with ``torch.export``; ``accel.apply`` makes it fast without changing its results (fp32: logits
within 1e-5, the same token ids greedy and with beams over a padded batch); ``accel.remove`` gives
the plain model back. (The accelerated model against transformers' native Florence-2, per CPU
capability level: test_fast_paths.py; the plain model against it: test_parity.py.)"""
import pytest
import torch

from florence import Florence2Config, Florence2ForConditionalGeneration, Florence2Processor, Pipeline, accel
from florence.generation import sequence_log_probs

PLAIN_PACKAGES = ("torch.", "timm.", "transformers.", "florence.models.")


def close(got, ref, tol=1e-5) -> bool:
    """Within ``tol`` of the reference's scale (its largest magnitude, at least 1)."""
    finite = torch.isfinite(ref)
    assert torch.equal(finite, torch.isfinite(got))  # the same tokens banned (-inf)
    return bool((got[finite] - ref[finite]).abs().max() <= tol * max(1.0, ref[finite].abs().max().item()))


def module_packages(model):
    return {type(m).__module__ for m in model.modules()}


@pytest.fixture(scope="module")
def pair(oracle):
    """(plain, accelerated) models on the oracle's random weights."""
    _, native, _ = oracle
    plain = Florence2ForConditionalGeneration.from_pretrained(native)
    return plain, accel.apply(Florence2ForConditionalGeneration.from_pretrained(native))


@pytest.fixture(scope="module")
def inputs(tokenizer):
    torch.manual_seed(5)
    pixels = torch.randn(2, 3, 384, 384)
    enc = tokenizer(["What does the image describe?", "Locate the phrases in the caption: a cat on a mat"],
                    padding=True, padding_side="right", return_tensors="pt")
    return pixels, enc["input_ids"], enc["attention_mask"]


def test_plain_model_holds_only_torch_timm_and_transformers_modules(pair):
    plain, fast = pair
    built = Florence2ForConditionalGeneration(Florence2Config.preset("tiny", vocab_size=300))
    for model in (plain, built):
        assert not accel.is_applied(model)
        assert all(name.startswith(PLAIN_PACKAGES) for name in module_packages(model)), module_packages(model)
    assert accel.is_applied(fast)  # the check sees the accelerator's modules when they are there
    assert any(name.startswith("florence.accel.") for name in module_packages(fast))


def test_plain_tiny_model_exports_with_torch_export():
    torch.manual_seed(0)
    model = Florence2ForConditionalGeneration(Florence2Config.preset("tiny", vocab_size=300)).eval()
    pixels, ids = torch.randn(1, 3, 128, 128), torch.tensor([[0, 5, 6, 7, 2]])
    dec = torch.tensor([[2, 0, 17, 200, 9]])
    program = torch.export.export(model, (pixels, ids), dict(decoder_input_ids=dec))
    with torch.no_grad():
        ref = model(pixels, ids, decoder_input_ids=dec).logits
    got = program.module()(pixels, ids, decoder_input_ids=dec).logits
    assert got.shape == (1, 5, 300) and torch.allclose(got, ref, atol=1e-5)


@torch.no_grad()
def test_accelerated_logits_equal_plain_within_1e5(pair, inputs):
    plain, fast = pair
    pixels, ids, mask = inputs
    dec = torch.tensor([[2, 0, 17, 300, 110, 5, 9, 1, 1]] * 2)
    dec_mask = (dec != 1).long()
    ref = plain(pixels, ids, mask, decoder_input_ids=dec, decoder_attention_mask=dec_mask).logits
    got = fast(pixels, ids, mask, decoder_input_ids=dec, decoder_attention_mask=dec_mask).logits
    valid = dec_mask.bool()
    assert (mask == 0).any() and ref[valid].std() > 0.1
    assert close(got[valid], ref[valid])


@torch.no_grad()
@pytest.mark.parametrize("num_beams", [1, 3])
def test_accelerated_generation_equals_plain(pair, inputs, num_beams, monkeypatch):
    """Same token ids and step scores over a padded batch; the accelerated run really took its lean
    decoding steps and the shared cross-attention cache."""
    from florence.accel.decoding import DecodingBart

    plain, fast = pair
    pixels, ids, mask = inputs
    steps = []
    monkeypatch.setattr(DecodingBart, "decode_step",
                        lambda self, *a, _f=DecodingBart.decode_step: steps.append(a[2]) or _f(self, *a))
    kwargs = dict(num_beams=num_beams, max_new_tokens=12, min_new_tokens=12, no_repeat_ngram_size=3,
                  output_logits=True, return_dict_in_generate=True)
    ref, got = plain.generate(pixels, ids, mask, **kwargs), fast.generate(pixels, ids, mask, **kwargs)
    assert len(steps) == 12 and type(steps[0].cross_attention_cache).__name__ == "SharedCrossAttentionCache"
    assert got.sequences.tolist() == ref.sequences.tolist()
    for a, b in zip(got.logits, ref.logits):  # within 1e-5 of the logits' scale (fp32 summation order)
        assert close(a, b)
    enc_plain, enc_fast = plain.encode(pixels, ids, mask), fast.encode(pixels, ids, mask)
    assert close(sequence_log_probs(fast, enc_fast, ref.sequences), sequence_log_probs(plain, enc_plain, ref.sequences))


def test_apply_and_remove_keep_parameters_and_round_trip(oracle):
    _, native, _ = oracle
    model = Florence2ForConditionalGeneration.from_pretrained(native)
    params = dict(model.named_parameters())
    classes = [type(m) for m in model.modules()]
    assert accel.apply(accel.apply(model)) is model  # idempotent, in place
    assert dict(model.named_parameters()) == params  # the same tensor objects under the same names
    assert model.language_model.config._attn_implementation == "florence_cpu"
    accel.remove(model)
    assert [type(m) for m in model.modules()] == classes and not accel.is_applied(model)
    assert model.language_model.config._attn_implementation == "sdpa"
    assert accel.apply(model, False) is model and not accel.is_applied(model)
    with pytest.raises(ValueError, match="True, False or 'auto'"):
        accel.apply(model, "yes")


def test_apply_replaces_modules_keeping_hooks_ties_and_lora_wrappers():
    """The accelerated modules replace the plain ones in their parents and hold their state: a hook
    registered before keeps firing (and its handle still removes it), the output layer stays tied to
    the embeddings, and a wrapper's inner linear is replaced while the wrapper stays."""
    from florence.accel.decoding import DecodingBart
    from florence.accel.linear import FastLinear

    class Wrapper(torch.nn.Linear):  # e.g. a LoRA layer: a Linear subclass holding the base linear
        def __init__(self, base):
            super().__init__(1, 1)
            self.base_layer = base

        def forward(self, x):
            return self.base_layer(x)

    model = Florence2ForConditionalGeneration(Florence2Config.preset("tiny", vocab_size=300)).eval()
    lm, fc1 = model.language_model, model.language_model.model.decoder.layers[0].fc1
    calls = []
    handle = fc1.register_forward_hook(lambda *a: calls.append(1))
    wrapped = model.language_model.model.encoder.layers[0].fc2
    model.language_model.model.encoder.layers[0].fc2 = Wrapper(wrapped)
    ids = torch.tensor([[0, 5, 2]])
    accel.apply(model)
    new_lm, new_fc1 = model.language_model, model.language_model.model.decoder.layers[0].fc1
    assert type(new_lm) is DecodingBart and new_lm is not lm and type(new_fc1) is FastLinear
    assert new_fc1.weight is fc1.weight and new_lm.lm_head.weight is new_lm.model.shared.weight
    wrapper = new_lm.model.encoder.layers[0].fc2
    assert type(wrapper) is Wrapper and type(wrapper.base_layer) is FastLinear
    assert wrapper.base_layer.weight is wrapped.weight
    model.language_model(input_ids=ids, decoder_input_ids=ids)
    assert calls == [1]
    handle.remove()
    model.language_model(input_ids=ids, decoder_input_ids=ids)
    assert calls == [1]
    accel.remove(model)
    assert type(model.language_model) is type(lm)
    assert type(model.language_model.model.decoder.layers[0].fc1) is torch.nn.Linear


def test_auto_accelerates_on_cpu_only():
    model = Florence2ForConditionalGeneration(Florence2Config.preset("tiny", vocab_size=300))
    assert not accel.is_applied(accel.apply(model, "auto", device="cuda"))
    assert not accel.wanted("meta") and accel.wanted(torch.device("cpu"))
    assert accel.is_applied(accel.apply(model))  # the model is on the CPU


def test_resized_vocabulary_stays_accelerated():
    from florence.accel.linear import FastLinear

    model = accel.apply(Florence2ForConditionalGeneration(Florence2Config.preset("tiny", vocab_size=300)))
    model.resize_token_embeddings(320)
    assert type(model.language_model.lm_head) is FastLinear and model.config.text.vocab_size == 320
    plain = Florence2ForConditionalGeneration(Florence2Config.preset("tiny", vocab_size=300))
    plain.resize_token_embeddings(320)
    assert type(plain.language_model.lm_head) is torch.nn.Linear


def test_pipeline_accelerates_by_default_and_can_turn_it_off(tokenizer):
    def model():
        return Florence2ForConditionalGeneration(Florence2Config.preset("tiny", vocab_size=len(tokenizer)))

    assert accel.is_applied(Pipeline(model(), Florence2Processor(tokenizer)).model)
    pipe = Pipeline(model(), Florence2Processor(tokenizer), accelerate=False)
    assert not accel.is_applied(pipe.model)
    assert isinstance(pipe(torch.zeros(3, 64, 64, dtype=torch.uint8).numpy().transpose(1, 2, 0), "<OD>",
                           max_new_tokens=4, num_beams=1)["<OD>"], dict)
