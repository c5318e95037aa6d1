"""The accelerated model (florence.accel: oneDNN linears, the channels-last DaViT, the shared
cross-attention cache, the lean decoding step) against transformers' native Florence-2 on the same random tiny weights: training gradients
(oneDNN linears with their backward, the channels-last DaViT with and without gradient
checkpointing, bf16 autocast), batched beam search over padded prompts, and bf16 decoding steps.

Every test runs once per capability level this machine can stand in for: as it is, without oneDNN's
bf16 kernels (what an AVX2-only CPU has) where it has them, and with no oneDNN linear at all (the
plain ``F.linear`` fallback). So CI on any CPU checks each fast path and each of its fallbacks."""
import copy

import pytest
import torch

from florence import Florence2ForConditionalGeneration, accel, hardware
from florence.accel.linear import FastLinear

from test_parity import native_inputs  # tests/models is on sys.path (pytest rootdir-relative imports)

N_TARGET = 6
N_IMAGE_TOKENS = 145  # 384 px: a 12x12 grid + the pooled token

_NATIVE = hardware.onednn_dtypes()
LEVELS = {"native": None, "no-onednn-bf16": _NATIVE - {torch.bfloat16}, "no-onednn": frozenset()}
LEVELS = {k: v for k, v in LEVELS.items() if v is None or v != _NATIVE}  # only the levels that differ here


@pytest.fixture(autouse=True, params=list(LEVELS))
def capability(request):
    """The test body runs with the oneDNN linears this level allows (``hardware.limited``)."""
    level = LEVELS[request.param]
    if level is None:
        yield _NATIVE
        return
    with hardware.limited(onednn=level):
        assert hardware.onednn_dtypes() == level
        yield level


@pytest.fixture(scope="module")
def models(oracle):
    hf, native, _ = oracle
    return hf, accel.apply(Florence2ForConditionalGeneration.from_pretrained(native))


@pytest.fixture(scope="module")
def inputs(tokenizer):
    torch.manual_seed(3)
    pixels = torch.randn(2, 3, 384, 384)  # stage grids 96/48/24/12: first-stage weight gradients span 18432 rows
    long = "Locate the phrases in the caption: " + " and ".join(["a red square next to a blue circle"] * 4)
    enc = tokenizer(["What does the image describe?", long], padding=True, padding_side="right", return_tensors="pt")
    labels = torch.randint(4, 300, (2, N_TARGET))
    return pixels, enc["input_ids"], enc["attention_mask"], labels


def losses_and_grads(hf, ours, inputs, autocast=False, checkpointing=False):
    pixels, ids, mask, labels = inputs
    ref_ids, ref_mask = native_inputs(hf, ids, mask, N_IMAGE_TOKENS)
    ours.vision_tower.set_grad_checkpointing(checkpointing)
    out = []
    try:
        for model, kwargs in ((hf, dict(input_ids=ref_ids, attention_mask=ref_mask)),
                              (ours, dict(input_ids=ids, attention_mask=mask))):
            model.train()
            model.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                loss = model(pixel_values=pixels, labels=labels, **kwargs).loss
            loss.backward()
            out.append((loss.item(), model))
    finally:
        ours.vision_tower.set_grad_checkpointing(False)
        hf.eval(), ours.eval()
    return out


# (native name, florence name) of weights whose gradients run through FastLinear's backward
GRADS = [("model.vision_tower.blocks.0.0.spatial_block.ffn.fc1.weight", "vision_tower.stages.0.blocks.0.spatial_block.mlp.fc1.weight"),
         ("model.vision_tower.blocks.0.0.channel_block.channel_attn.qkv.weight", "vision_tower.stages.0.blocks.0.channel_block.attn.qkv.weight"),
         ("model.vision_tower.blocks.3.0.spatial_block.window_attn.proj.bias", "vision_tower.stages.3.blocks.0.spatial_block.attn.proj.bias"),
         ("model.vision_tower.convs.0.conv.weight", "vision_tower.stem.conv.weight"),
         ("model.language_model.encoder.layers.0.fc1.weight", "language_model.model.encoder.layers.0.fc1.weight"),
         ("model.language_model.decoder.layers.1.encoder_attn.k_proj.weight", "language_model.model.decoder.layers.1.encoder_attn.k_proj.weight")]


@pytest.mark.parametrize("checkpointing", [False, True])
def test_training_gradients_equal_oracle(models, inputs, checkpointing):
    hf, ours = models
    assert type(ours.vision_tower.stages[0].blocks[0].spatial_block.mlp.fc1) is FastLinear
    (ref_loss, _), (loss, _) = losses_and_grads(hf, ours, inputs, checkpointing=checkpointing)
    assert loss == pytest.approx(ref_loss, rel=1e-5)
    for native_name, name in GRADS:
        ref, got = hf.get_parameter(native_name).grad, ours.get_parameter(name).grad
        assert ref.abs().max() > 0
        assert (got - ref).abs().max() <= 1e-4 * ref.abs().max() + 1e-6, name


def test_autocast_training_follows_oracle(models, inputs):
    hf, ours = models
    (ref_loss, _), (loss, _) = losses_and_grads(hf, ours, inputs, autocast=True)
    assert loss == pytest.approx(ref_loss, rel=2e-2)
    for native_name, name in GRADS:
        ref, got = hf.get_parameter(native_name).grad, ours.get_parameter(name).grad
        assert got.dtype == torch.float32
        cos = torch.nn.functional.cosine_similarity(got.flatten(), ref.flatten(), dim=0)
        assert cos > 0.99, name


@torch.no_grad()
def test_batched_padded_beam_search_equals_oracle(models, inputs):
    """Beams share one cross-attention K/V per input (group queries, padded encoder masks)."""
    hf, ours = models
    pixels, ids, mask, _ = inputs
    kwargs = dict(num_beams=3, do_sample=False, max_new_tokens=10, min_new_tokens=10, no_repeat_ngram_size=0,
                  early_stopping=True, forced_bos_token_id=0, forced_eos_token_id=2, decoder_start_token_id=2)
    ref_ids, ref_mask = native_inputs(hf, ids, mask, N_IMAGE_TOKENS)
    ref = hf.generate(input_ids=ref_ids, attention_mask=ref_mask, pixel_values=pixels, **kwargs)
    got = ours.generate(pixels, ids, mask, **kwargs)
    assert (mask == 0).any() and got.tolist() == ref.tolist()


@torch.no_grad()
def test_encode_one_input_at_a_time_equals_batched_encoder(models, inputs):
    """encode() runs the BART encoder row by row: every unpadded position as in one padded batch."""
    _, ours = models
    pixels, ids, mask, _ = inputs
    embeds, full_mask = ours.encoder_inputs(pixels, ids, mask)
    batched = ours.language_model.get_encoder()(inputs_embeds=embeds, attention_mask=full_mask).last_hidden_state
    encoded, got_mask = ours.encode(pixels, ids, mask)
    rows = encoded.last_hidden_state
    valid = full_mask.bool()
    assert (~valid).any() and torch.equal(got_mask, full_mask)
    assert torch.equal(rows[valid], batched[valid])


@torch.no_grad()
def test_bf16_decoding_steps_as_accurate_as_oracle(oracle, inputs):
    """bf16 decoding (float32-softmax attention for one query row, shared cross-attention K/V,
    packed weights): step logits against the fp32 oracle's teacher-forced logits, no further off
    than the native model's own bf16 logits."""
    hf, native, _ = oracle
    ours = accel.apply(Florence2ForConditionalGeneration.from_pretrained(native, dtype=torch.bfloat16))
    hf16 = copy.deepcopy(hf).to(torch.bfloat16)
    pixels, ids, mask, _ = inputs
    out = ours.generate(pixels.bfloat16(), ids, mask, num_beams=1, max_new_tokens=8, min_new_tokens=8,
                        no_repeat_ngram_size=0, output_logits=True, return_dict_in_generate=True)
    steps = torch.stack(out.logits, 1).float()  # (B, 8, V): logits of each cached decoding step
    ref_ids, ref_mask = native_inputs(hf, ids, mask, N_IMAGE_TOKENS)
    dec = out.sequences[:, :-1]
    ref = hf(input_ids=ref_ids, attention_mask=ref_mask, pixel_values=pixels, decoder_input_ids=dec).logits
    ref16 = hf16(input_ids=ref_ids, attention_mask=ref_mask, pixel_values=pixels.bfloat16(),
                 decoder_input_ids=dec).logits.float()
    err, err_native = (steps - ref).abs().max(), (ref16 - ref).abs().max()
    assert err <= 2 * err_native + 1e-3 and err < 0.1 * ref.abs().max()


@torch.no_grad()
@pytest.mark.parametrize("num_beams", [1, 3])
def test_lean_decoding_steps_equal_transformers_forward(models, inputs, num_beams, monkeypatch):
    """DecodingBart's own decoding step (padded batch, beams sharing cross-attention rows) gives
    transformers' forward's token ids and, within fp32 rounding, its step logits."""
    from florence.accel.decoding import DecodingBart

    _, ours = models
    pixels, ids, mask, _ = inputs
    steps = []
    monkeypatch.setattr(DecodingBart, "decode_step", lambda self, *a, _f=DecodingBart.decode_step: steps.append(1) or _f(self, *a))
    kwargs = dict(num_beams=num_beams, do_sample=False, max_new_tokens=12, min_new_tokens=12, no_repeat_ngram_size=3,
                  output_logits=True, return_dict_in_generate=True, suppress_tokens=[5, 7, 10 ** 6])
    out = {}
    for lean in (True, False):
        ours.language_model.lean_steps = lean
        try:
            out[lean] = ours.generate(pixels, ids, mask, **kwargs)
        finally:
            del ours.language_model.lean_steps  # back to the class default
        assert len(steps) == (12 if lean else 0)  # every step, the first included
        steps.clear()
    assert (mask == 0).any() and out[True].sequences.tolist() == out[False].sequences.tolist()
    for a, b in zip(out[True].logits, out[False].logits):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    assert not torch.isin(out[True].sequences, torch.tensor([5, 7])).any()


@torch.no_grad()
def test_decoding_falls_back_to_transformers_forward(models, inputs):
    """Requests the lean step does not serve (per-layer hidden states) run transformers' forward."""
    _, ours = models
    pixels, ids, mask, _ = inputs
    out = ours.generate(pixels[:1], ids[:1], mask[:1], num_beams=1, max_new_tokens=3, output_hidden_states=True,
                        return_dict_in_generate=True)
    layers = ours.config.text.decoder_layers
    assert [len(step) for step in out.decoder_hidden_states] == [layers + 1] * 3


def test_fast_logits_processors_equal_transformers():
    from transformers.generation.logits_process import (ForcedEOSTokenLogitsProcessor, LogitsProcessorList,
                                                        MinLengthLogitsProcessor, MinNewTokensLengthLogitsProcessor,
                                                        NoRepeatNGramLogitsProcessor, SuppressTokensLogitsProcessor)

    from florence.accel.processors import fast_logits_processors

    def build():  # min_new_tokens before forced EOS, as transformers orders them: the last step is EOS
        return LogitsProcessorList([MinLengthLogitsProcessor(6, [2, 3]), MinNewTokensLengthLogitsProcessor(3, 4, 2),
                                    NoRepeatNGramLogitsProcessor(2), ForcedEOSTokenLogitsProcessor(7, 2),
                                    SuppressTokensLogitsProcessor([1, 40, 99, 500])])

    g = torch.Generator().manual_seed(0)
    given = build()
    fast = fast_logits_processors(given)
    assert [type(p).__name__ for p in fast][:2] == ["_MinLength", "_MinNewTokens"]
    assert [type(p) for p in given] == [type(p) for p in build()]  # wrapped, not changed in place
    for length in range(3, 8):
        ids = torch.randint(0, 50, (3, length), generator=g)
        scores = torch.randn(3, 100, generator=g)
        assert torch.equal(fast(ids, scores), build()(ids, scores))


@torch.no_grad()
def test_fp32_model_runs_inference_under_bf16_autocast(models, inputs):
    """oneDNN linears with a fused residual add get a float32 residual under autocast (DaViT's
    channel attention and MLPs, the decoding step): they add it after the bf16 matmul, as F.linear
    + residual does, and the outputs follow the model's own bf16 autocast logits."""
    from florence.accel.linear import linear

    x, w, b, r = torch.randn(5, 8), torch.randn(6, 8), torch.randn(6), torch.randn(5, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, ref = linear(x, w, b, residual=r), torch.nn.functional.linear(x, w, b) + r
    assert got.dtype == ref.dtype == torch.float32 and torch.equal(got, ref)
    _, ours = models
    pixels, ids, mask, _ = inputs
    plain = ours.generate(pixels, ids, mask, num_beams=1, max_new_tokens=4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto = ours.generate(pixels, ids, mask, num_beams=1, max_new_tokens=4)
    assert auto.shape == plain.shape


@torch.no_grad()
def test_bf16_generation_gives_fp32_token_ids(oracle, inputs):
    """A bf16 model (oneDNN's bf16 kernels where this level has them, plain torch ops otherwise)
    picks the fp32 model's greedy token at every step where the fp32 top two logits lie further apart
    than twice the native model's own bf16 error: nowhere does ours round worse than the reference."""
    hf, native, _ = oracle
    fp32 = accel.apply(Florence2ForConditionalGeneration.from_pretrained(native))
    bf16 = accel.apply(Florence2ForConditionalGeneration.from_pretrained(native, dtype=torch.bfloat16))
    pixels, ids, mask, _ = inputs
    seq = fp32.generate(pixels, ids, mask, num_beams=1, max_new_tokens=12, min_new_tokens=12, no_repeat_ngram_size=0)
    dec, nxt = seq[:, :-1], seq[:, 1:]
    ref = fp32(pixels, ids, mask, decoder_input_ids=dec).logits  # (B, T, V), teacher-forced
    got = bf16(pixels.bfloat16(), ids, mask, decoder_input_ids=dec).logits.float()
    ref_ids, ref_mask = native_inputs(hf, ids, mask, N_IMAGE_TOKENS)
    ref16 = copy.deepcopy(hf).to(torch.bfloat16)(input_ids=ref_ids, attention_mask=ref_mask,
                                                pixel_values=pixels.bfloat16(), decoder_input_ids=dec).logits.float()
    top2 = ref.topk(2, dim=-1).values
    free = ref.argmax(-1) == nxt  # steps the generation settings did not force (the first token is <s>)
    clear = free & ((top2[..., 0] - top2[..., 1]) > 2 * (ref16 - ref).abs().amax(-1))
    assert clear.sum() >= 6  # of 24 steps: the comparison has teeth
    assert torch.equal(got.argmax(-1)[clear], nxt[clear])
