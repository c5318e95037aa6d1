"""A trained model as a folder that transformers' native Florence-2 loads whole, without florence:
``Florence2ForConditionalGeneration``/``AutoModelForImageTextToText`` (weights, ``config.json``,
``generation_config.json``) and ``AutoProcessor`` (tokenizer, ``preprocessor_config.json``,
``processor_config.json``), whose ``post_process_generation`` parses as florence's tasks do.

What transformers' processor needs beyond florence's own files:

- an ``<image>`` token, named ``image_token`` in ``tokenizer_config.json``: the processor puts one per
  visual token before the prompt, and the model replaces their embeddings with the image features.
  A tokenizer without it gets it as its next id; the model gets an embedding row for it if its
  vocabulary has none (the mean embedding), and generation never emits it (``suppress_tokens``, in
  florence's settings as in ``generation_config.json``), so results are those of the model before.
- ``image_seq_length`` (visual tokens per image at the exported size) in ``preprocessor_config.json``;
- the grounding parser's list of non-object phrases, from florence's phrase-grounding task, in
  ``processor_config.json``.

The Microsoft layout is the hub repos' (their own ``trust_remote_code`` modeling files read it):
written as florence's files only.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

from ..atomic import folder_atomic

__all__ = ["IMAGE_TOKEN", "image_seq_length", "write_model_folder"]

IMAGE_TOKEN = "<image>"


def image_seq_length(vision, image_size: int) -> int:
    """Visual tokens per image of side ``image_size``: the tower's grid after its four patch
    embeddings (each a convolution: ``(n + 2 * padding - kernel) // stride + 1``), plus the pooled one."""
    n = int(image_size)
    for kernel, stride, padding in zip(vision.patch_size, vision.patch_stride, vision.patch_padding):
        n = (n + 2 * padding - kernel) // stride + 1
    if n < 1:
        raise ValueError(f"image size {image_size} is too small for the vision tower (no visual token left)")
    return n * n + 1


def _post_processor_config() -> dict:
    """transformers' Florence2PostProcessor settings that make it parse as florence's tasks do."""
    from ..task import get_task

    kinds = ("pure_text", "bboxes", "description_with_bboxes", "description_with_polygons", "polygons",
             "description_with_bboxes_or_polygons")  # parsed as published: no settings
    return {**{kind: {} for kind in kinds}, "ocr": {"AREA_THRESHOLD": 0.0},
            "phrase_grounding": {"banned_grounding_tokens": sorted(get_task("<CAPTION_TO_PHRASE_GROUNDING>").ignore)}}


def with_image_token(model, tokenizer):
    """Copies of ``model`` (a florence Florence2ForConditionalGeneration) and ``tokenizer`` that both
    know ``<image>``: its id in the config, a row in the embeddings, suppressed in generation."""
    tokenizer = copy.deepcopy(tokenizer)
    tokenizer.backend_tokenizer.no_truncation()  # the backend's last call is not part of the tokenizer
    tokenizer.backend_tokenizer.no_padding()
    if IMAGE_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_tokens([IMAGE_TOKEN], special_tokens=True)
    image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    model = copy.deepcopy(model)
    if model.config.text.vocab_size <= image_id:
        model.resize_token_embeddings(image_id + 1)
    model.config.image_token_id = image_id
    suppressed = sorted(set(model.config.generation.get("suppress_tokens") or []) | {image_id})
    model.config.generation = dict(model.config.generation, suppress_tokens=suppressed)
    model.generation_config.suppress_tokens = suppressed
    return model, tokenizer


def write_model_folder(model, tokenizer, folder, image_size: int = 768, layout: str = "native") -> Path:
    """Write ``model`` (florence's Florence2ForConditionalGeneration, float weights as they are) with
    ``tokenizer`` and the published preprocessing at ``image_size`` into ``folder``, atomically (a kill
    leaves the previous folder or none). ``layout="native"``: the folder transformers loads whole;
    ``"microsoft"``: the hub layout."""
    from ..processing import Florence2Processor, ImageProcessor

    if layout not in ("native", "microsoft"):
        raise ValueError(f"layout must be 'native' or 'microsoft', got {layout!r}")
    image_size = int(image_size)
    seq_length = image_seq_length(model.config.vision, image_size)
    if layout == "native":
        model, tokenizer = with_image_token(model, tokenizer)
    with folder_atomic(folder) as tmp:
        model.save_pretrained(tmp, layout=layout)
        Florence2Processor(tokenizer, ImageProcessor(size=image_size)).save_pretrained(tmp)
        if layout == "native":
            model.generation_config.save_pretrained(tmp)
            _name_image_token(tmp / "tokenizer_config.json")
            _update_json(tmp / "preprocessor_config.json", image_seq_length=seq_length)
            _update_json(tmp / "processor_config.json", processor_class="Florence2Processor",
                         post_processor_config=_post_processor_config())
    return Path(folder)


def _update_json(path: Path, **entries):
    data = json.loads(path.read_text()) if path.exists() else {}
    data.update(entries)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def _name_image_token(path: Path):
    """transformers reads named special tokens (``tokenizer.image_token``) from a dict under
    ``extra_special_tokens``; the Florence tokens stay special tokens in ``tokenizer.json``."""
    _update_json(path, extra_special_tokens={"image_token": IMAGE_TOKEN})
