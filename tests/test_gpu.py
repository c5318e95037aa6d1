"""On a CUDA GPU (``pytest -m gpu``; skipped on machines without one): parity with the native
model in fp32, bf16/fp16 generation through ``dtype="auto"``, and an AMP training step. Device and
dtype flow from the model: nothing here names the CPU."""
import pytest
import torch

import florence
from florence import Florence2ForConditionalGeneration, hardware

from models.test_parity import native_inputs  # tests/ is the rootdir: its subfolders import as packages

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def exact_matmuls():
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


@torch.no_grad()
def test_cuda_fp32_logits_and_ids_equal_oracle(oracle, tokenizer):
    hf, native, _ = oracle
    hf = hf.to("cuda")
    ours = Florence2ForConditionalGeneration.from_pretrained(native, device="cuda")
    torch.manual_seed(1)
    pixels = torch.randn(2, 3, 768, 768, device="cuda")
    enc = tokenizer(["What does the image describe?", "Locate the phrases in the caption: a cat on a mat"],
                    padding=True, padding_side="right", return_tensors="pt").to("cuda")
    ref_ids, ref_mask = native_inputs(hf, enc["input_ids"].cpu(), enc["attention_mask"].cpu())
    ref_ids, ref_mask = ref_ids.cuda(), ref_mask.cuda()
    dec = torch.tensor([[2, 0, 17, 300, 5]] * 2, device="cuda")
    ref = hf(input_ids=ref_ids, attention_mask=ref_mask, pixel_values=pixels, decoder_input_ids=dec).logits
    got = ours(pixels, enc["input_ids"], enc["attention_mask"], decoder_input_ids=dec).logits
    assert (got - ref).abs().max() < 1e-4 * max(1.0, ref.abs().max().item())
    kwargs = dict(num_beams=3, max_new_tokens=10, min_new_tokens=10, no_repeat_ngram_size=0)
    ref_seq = hf.generate(input_ids=ref_ids, attention_mask=ref_mask, pixel_values=pixels, **kwargs)
    assert ours.generate(pixels, enc["input_ids"], enc["attention_mask"], **kwargs).tolist() == ref_seq.tolist()
    hf.to("cpu")


@pytest.mark.parametrize("dtype", ["auto", "float16", "bfloat16"])
def test_cuda_half_precision_generation(tiny_folder, dtype):
    if dtype == "bfloat16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    pipe = florence.pipeline(str(tiny_folder), device="cuda", dtype=dtype)
    expected = hardware.resolve_dtype(dtype, "cuda")
    assert pipe.model.device.type == "cuda" and pipe.model.dtype == expected
    image = torch.rand(3, 120, 160)
    result = pipe([image, image], ["<OD>", "<CAPTION>"], max_new_tokens=12)
    assert set(result[0]["<OD>"]) >= {"bboxes", "labels"} and isinstance(result[1]["<CAPTION>"], str)


def test_cuda_amp_training_step(tiny_folder):
    from florence.engine.runtime import AutocastOptimWrapper

    model = Florence2ForConditionalGeneration.from_pretrained(str(tiny_folder), device="cuda").train()
    wrapper = AutocastOptimWrapper(optimizer=torch.optim.AdamW(model.parameters(), lr=1e-4))
    pixels = torch.randn(2, 3, 128, 128, device="cuda")
    ids = torch.tensor([[0, 5, 6, 2], [0, 7, 2, 1]], device="cuda")
    labels = torch.tensor([[0, 9, 10, 2], [0, 8, 2, 1]], device="cuda")
    before = model.image_projection.detach().clone()
    with wrapper.optim_context(model):
        loss = model(pixels, ids, (ids != 1).long(), labels=labels).loss
    wrapper.update_params(loss)
    assert wrapper.cast_dtype == hardware.resolve_dtype("auto", "cuda", training=True)
    assert torch.isfinite(loss) and not torch.equal(before, model.image_projection)
