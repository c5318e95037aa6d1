"""Parity with transformers' native Florence-2 (the oracle) on the same random tiny weights, loaded
from both published layouts: logits within 1e-4 (fp32), generation token ids identical."""
import pytest
import torch

from florence import Florence2ForConditionalGeneration

N_IMAGE_TOKENS = 577
PROMPTS = ["What does the image describe?", "Locate the phrases in the caption: a cat on a mat",
           "Describe in detail what is shown in the image."]


@pytest.fixture(scope="module", params=["native", "microsoft"])
def pair(request, oracle):
    hf, native, microsoft = oracle
    folder = native if request.param == "native" else microsoft
    return hf, Florence2ForConditionalGeneration.from_pretrained(folder)


@pytest.fixture(scope="module")
def batch(tokenizer):
    torch.manual_seed(1)
    pixels = torch.randn(len(PROMPTS), 3, 768, 768)
    enc = tokenizer(PROMPTS, padding=True, padding_side="right", return_tensors="pt")
    return pixels, enc["input_ids"], enc["attention_mask"]


def native_inputs(hf, input_ids, attention_mask, n_image_tokens=N_IMAGE_TOKENS):
    """The native port's input: <image> placeholders (577 at 768 px) in front of the prompt tokens."""
    B = input_ids.shape[0]
    image = torch.full((B, n_image_tokens), hf.config.image_token_id)
    return torch.cat([image, input_ids], 1), torch.cat([torch.ones(B, n_image_tokens, dtype=torch.long),
                                                        attention_mask], 1)


def test_loaded_weights_equal_oracle(pair):
    hf, ours = pair
    hf_embed = hf.model.language_model.shared.weight
    assert torch.equal(ours.language_model.model.shared.weight, hf_embed)
    lm = ours.language_model
    for tied in (lm.lm_head.weight, lm.model.encoder.embed_tokens.weight, lm.model.decoder.embed_tokens.weight):
        assert tied is lm.model.shared.weight  # one parameter, as built: training updates all uses at once
    assert torch.equal(ours.image_projection, hf.model.multi_modal_projector.image_projection.weight.t())


@torch.no_grad()
def test_logits_single_samples(pair, batch, tokenizer):
    hf, ours = pair
    pixels, ids, mask = batch
    dec = torch.tensor([[2, 0, 17, 300, 1100, 5, 9]])
    for i in range(len(PROMPTS)):
        n = int(mask[i].sum())
        p, x = pixels[i:i + 1], ids[i:i + 1, :n]
        ref_ids, ref_mask = native_inputs(hf, x, torch.ones_like(x))
        ref = hf(input_ids=ref_ids, attention_mask=ref_mask, pixel_values=p, decoder_input_ids=dec).logits
        got = ours(p, x, decoder_input_ids=dec).logits
        assert got.shape == ref.shape
        assert (got - ref).abs().max() < 1e-4
        assert ref.std() > 0.1  # the oracle's logits are not flat: the comparison can fail


@torch.no_grad()
def test_logits_right_padded_batch(pair, batch):
    hf, ours = pair
    pixels, ids, mask = batch
    assert (mask == 0).any()  # the batch really is padded
    dec = torch.tensor([[2, 0, 17, 300, 1100, 5, 9, 1, 1]] * 3)  # right-padded decoder inputs as well
    dec_mask = (dec != 1).long()
    got = ours(pixels, ids, mask, decoder_input_ids=dec, decoder_attention_mask=dec_mask).logits
    ref_ids, ref_mask = native_inputs(hf, ids, mask)
    ref = hf(input_ids=ref_ids, attention_mask=ref_mask, pixel_values=pixels, decoder_input_ids=dec,
             decoder_attention_mask=dec_mask).logits
    valid = dec_mask.bool()
    assert (got[valid] - ref[valid]).abs().max() < 1e-4
    for i in range(len(PROMPTS)):  # row for row equal to the unpadded single sample
        n = int(mask[i].sum())
        single = ours(pixels[i:i + 1], ids[i:i + 1, :n], decoder_input_ids=dec[i:i + 1, :7]).logits
        assert (got[i, :7] - single[0]).abs().max() < 1e-4


@torch.no_grad()
@pytest.mark.parametrize("num_beams,no_repeat", [(1, 0), (3, 0), (3, 3)])
def test_generation_identical(pair, batch, num_beams, no_repeat):
    hf, ours = pair
    pixels, ids, mask = batch
    kwargs = dict(num_beams=num_beams, do_sample=False, max_new_tokens=24, min_new_tokens=24,
                  no_repeat_ngram_size=no_repeat, early_stopping=True, forced_bos_token_id=0,
                  forced_eos_token_id=2, decoder_start_token_id=2)
    outputs = []
    for i in range(2):
        n = int(mask[i].sum())
        x = ids[i:i + 1, :n]
        ref_ids, ref_mask = native_inputs(hf, x, torch.ones_like(x))
        ref = hf.generate(input_ids=ref_ids, attention_mask=ref_mask, pixel_values=pixels[i:i + 1], **kwargs)
        got = ours.generate(pixels[i:i + 1], x, **kwargs)
        assert got.shape[1] >= 24
        assert got.tolist() == ref.tolist()
        outputs.append(got.tolist())
    assert outputs[0] != outputs[1]  # generation depends on the input: the comparison can fail


@torch.no_grad()
def test_padded_batch_generation_equals_single(pair, batch):
    _, ours = pair
    pixels, ids, mask = batch
    kwargs = dict(num_beams=3, max_new_tokens=20, no_repeat_ngram_size=0)
    batched = ours.generate(pixels, ids, mask, **kwargs)
    for i in range(len(PROMPTS)):
        n = int(mask[i].sum())
        single = ours.generate(pixels[i:i + 1], ids[i:i + 1, :n], **kwargs)[0]
        row = batched[i][: len(single)]
        assert row.tolist() == single.tolist()
        assert (batched[i][len(single):] == 1).all()  # anything after is padding


@torch.no_grad()
def test_image_encoded_once_per_generate_call(pair, batch):
    _, ours = pair
    pixels, ids, mask = batch
    calls = []
    hooks = [ours.vision_tower.stem.conv.register_forward_hook(lambda *a: calls.append("tower")),
             ours.language_model.model.encoder.register_forward_hook(lambda *a: calls.append("encoder"))]
    try:
        ours.generate(pixels[:1], ids[:1], mask[:1], num_beams=3, max_new_tokens=12)
    finally:
        for h in hooks:
            h.remove()
    assert calls == ["tower", "encoder"]


@torch.no_grad()
@pytest.mark.parametrize("size", [(300, 420), (512, 640)])
def test_window_padding_sizes(pair, size, tokenizer):
    """Stage grids that 12 does not divide need window padding (pad, then crop)."""
    hf, ours = pair
    torch.manual_seed(2)
    p = torch.randn(1, 3, *size)
    ref = hf.model.multi_modal_projector(hf.model.vision_tower(p).last_hidden_state)
    got = ours.encode_image(p)
    assert got.shape == ref.shape
    assert (got - ref).abs().max() < 1e-4
