"""Helpers the tests import (``from helpers import ...``: tests/ is on sys.path as pytest's rootdir;
a name of its own, as every test folder's ``conftest`` is a module named ``conftest``)."""
import torch
from pytest import approx


def randomize_(model, seed=0):
    """Weights large enough that logits and generation depend on every input (default inits give
    near-uniform logits, which would make parity checks weak)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if p.ndim == 1 and "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.1 * noise)
            elif p.ndim == 1:
                p.copy_(0.1 * noise)
            elif name.endswith("shared.weight"):  # equal-norm rows: no token wins whatever the input
                p.copy_(torch.nn.functional.normalize(noise, dim=-1) * 4)
            else:
                p.copy_(noise * min(0.5, 1.5 / p.shape[-1] ** 0.5))
    return model


def within_one_px(ours, native):
    """florence's parsed result equals transformers' post-processing of the same text, coordinates
    within 1 px (the native port truncates them to int; we keep bin centres)."""
    if isinstance(ours, dict):
        return ours.keys() == native.keys() and all(within_one_px(ours[k], native[k]) for k in ours)
    if isinstance(ours, list):
        return len(ours) == len(native) and all(within_one_px(a, b) for a, b in zip(ours, native))
    if isinstance(ours, float):
        return abs(ours - native) < 1.0
    return ours == native


def train_tiny(folder, tasks=("<OD>",), scenes: int = 4, steps: int = 120):
    """The tiny preset overfitted on ``scenes`` 64 px synthetic scenes of ``tasks`` (~15 s for 8 scenes
    and 120 steps), written as a model folder: boxes with high scores, labels from the scenes.
    Returns the scenes' samples."""
    from florence import Florence2Config, Florence2ForConditionalGeneration, build_tokenizer
    from florence.data import SyntheticScenes
    from florence.data.synthetic import vocabulary_texts
    from florence.deploy import write_model_folder
    from florence.processing import Florence2Processor, ImageProcessor
    from florence.task import get_task

    tok = build_tokenizer(vocabulary_texts(), vocab_size=500)
    torch.manual_seed(0)
    model = Florence2ForConditionalGeneration(Florence2Config.preset("tiny", vocab_size=len(tok)))
    data = SyntheticScenes(seed=3, length=scenes, image_size=64, tasks=list(tasks))
    samples = [data[i] for i in range(scenes)]
    batch = Florence2Processor(tok, ImageProcessor(size=64))(
        images=[s["image"] for s in samples],
        text=[get_task(s["task"]).prompt(s["text_input"], s["image_size"]) for s in samples])
    labels = tok([get_task(s["task"]).encode_target(s["annotation"], s["image_size"]) for s in samples],
                 padding=True, return_tensors="pt").input_ids
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(steps):
        loss = model(pixel_values=batch["pixel_values"], input_ids=batch["input_ids"],
                     attention_mask=batch["attention_mask"], labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    write_model_folder(model.eval(), tok, folder, image_size=64)
    return samples


def same_result(a, b):
    """Results equal; scores within 1e-5 (a padded batch vs alone changes float sums' order)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            if k == "scores":
                assert a[k] == approx(b[k], abs=1e-5)
            else:
                same_result(a[k], b[k])
    elif isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            same_result(x, y)
    else:
        assert a == b


def one_thread(fn):
    """``fn()`` on one thread, as a Ray replica of one CPU runs (Ray sets its OMP_NUM_THREADS to 1): the
    same float sums, so the same scores to the last bit."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fn()
    finally:
        torch.set_num_threads(threads)
