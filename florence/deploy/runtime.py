"""An ONNX model folder (:func:`florence.deploy.export_onnx`) run by onnxruntime behind florence's
model interface, so the pipeline, its batching, tasks, scores and parsing work unchanged::

    >>> pipe = florence.pipeline("model_onnx/", backend="onnxruntime")          # or variant="int8"

:class:`OnnxFlorence2` runs the vision encoder, the token embeddings and the encoder as the PyTorch
model's ``encode`` does; decoding is transformers' ``generate`` (greedy, beams, sampling, every logits
processor) over a small ``GenerationMixin`` model whose forward runs ``decoder_model_merged.onnx`` and
keeps the cache in transformers' ``EncoderDecoderCache``, which beam search reorders as it does for
PyTorch models. onnxruntime is imported when a folder is opened (the ``onnx`` extra).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from transformers import BartConfig, GenerationConfig, GenerationMixin, PreTrainedModel
from transformers.cache_utils import DynamicCache, EncoderDecoderCache
from transformers.modeling_outputs import BaseModelOutput, Seq2SeqLMOutput

from ..models import Florence2ForConditionalGeneration
from ..models.config import Florence2Config
from ..models.files import CheckpointError
from .onnx import GRAPHS, past_names

__all__ = ["OnnxFlorence2", "VARIANTS"]

VARIANTS = {"fp32": "", "fp16": "_fp16", "int8": "_int8"}


def _session(path: Path, threads: int | None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class _OnnxDecoder(PreTrainedModel, GenerationMixin):
    """BART's decoder + LM head as transformers' generate sees it, run by onnxruntime."""

    config_class = BartConfig
    main_input_name = "input_ids"
    _supports_cache_class = True

    def __init__(self, config: BartConfig, embed_tokens, decoder, generation_config: GenerationConfig):
        super().__init__(config)
        self.embed_session, self.decoder_session = embed_tokens, decoder
        self.generation_config = generation_config
        self.layers, self.heads = config.decoder_layers, config.decoder_attention_heads
        self.head_dim = config.d_model // config.decoder_attention_heads

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    def forward(self, decoder_input_ids=None, encoder_outputs=None, attention_mask=None, past_key_values=None,
                use_cache=None, **kwargs):
        hidden = encoder_outputs[0]
        batch = decoder_input_ids.shape[0]
        cached = past_key_values is not None and past_key_values.get_seq_length() > 0
        embeds = self.embed_session.run(None, {"input_ids": decoder_input_ids.cpu().numpy()})[0]
        feeds = {"inputs_embeds": embeds, "encoder_hidden_states": hidden.float().cpu().numpy(),
                 "encoder_attention_mask": attention_mask.cpu().numpy().astype(np.int64),
                 "use_cache_branch": np.array([cached])}
        empty = np.zeros((batch, self.heads, 0, self.head_dim), np.float32)
        for i, name in enumerate(past_names(self.layers)):
            layer, kv = divmod(i, 4)
            if not cached:
                feeds[name] = empty
                continue
            store = past_key_values.self_attention_cache if kv < 2 else past_key_values.cross_attention_cache
            feeds[name] = (store.layers[layer].keys if kv % 2 == 0 else store.layers[layer].values).numpy()
        logits, *present = self.decoder_session.run(None, feeds)
        if use_cache and past_key_values is not None:
            for layer in range(self.layers):
                k, v, ek, ev = (torch.from_numpy(t) for t in present[4 * layer:4 * layer + 4])
                if cached:  # present = past + this step's keys and values: replace, do not append
                    past_key_values.self_attention_cache.layers[layer].keys = k
                    past_key_values.self_attention_cache.layers[layer].values = v
                else:
                    past_key_values.self_attention_cache.update(k, v, layer)
                    past_key_values.cross_attention_cache.update(ek, ev, layer)
                    past_key_values.is_updated[layer] = True
        return Seq2SeqLMOutput(logits=torch.from_numpy(logits), past_key_values=past_key_values)


class OnnxFlorence2:
    """florence's model interface (``encode``, ``generate``, ``language_model`` for scores) over an
    ONNX folder. ``variant``: ``"fp32"`` (default), ``"fp16"`` or ``"int8"``: the graphs with that
    suffix, which the folder must hold. ``threads``: onnxruntime's intra-op threads (default: all cores)."""

    generate = Florence2ForConditionalGeneration.generate  # the same defaults and generate call as PyTorch

    def __init__(self, folder, variant: str = "fp32", threads: int | None = None):
        folder = Path(folder)
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
        files = {name: folder / "onnx" / f"{name}{VARIANTS[variant]}.onnx" for name in GRAPHS}
        missing = [str(p.relative_to(folder)) for p in files.values() if not p.is_file()]
        if missing:
            hint = "" if variant == "fp32" else f" (export with {'--dtype fp16' if variant == 'fp16' else '--quantize int8'})"
            raise CheckpointError(f"{folder} is not an ONNX model folder with the {variant} graphs: missing "
                                  f"{', '.join(missing)}{hint}")
        try:
            import onnxruntime  # noqa: F401
        except ImportError as e:
            raise ImportError("the onnxruntime backend needs the onnx extra: pip install 'florence-vision[onnx]'") from e
        self.folder, self.variant = folder, variant
        self.config = Florence2Config.from_json_file(folder / "config.json")
        self.generation_config = GenerationConfig.from_pretrained(folder)
        sessions = {name: _session(path, threads) for name, path in files.items()}
        self.vision_encoder, self.embed_tokens = sessions["vision_encoder"], sessions["embed_tokens"]
        self.encoder = sessions["encoder_model"]
        self.language_model = _OnnxDecoder(self.config.text, self.embed_tokens, sessions["decoder_model_merged"],
                                           self.generation_config)

    device = torch.device("cpu")
    dtype = torch.float32

    def to(self, device=None, dtype=None):
        if device is not None and torch.device(device).type != "cpu":
            raise ValueError(f"the onnxruntime backend runs on the CPU, not {device}")
        return self

    def eval(self):
        return self

    def resize_token_embeddings(self, num_tokens: int):
        raise ValueError(f"{self.folder}: the ONNX graphs hold a vocabulary of {self.config.vocab_size} tokens and "
                         f"the tokenizer needs {num_tokens}: export the model again with the task's tokens added")

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """One image at a time, as the PyTorch model encodes without gradients: no slower per image, and
        onnxruntime's memory arena then holds one image's activations (with batches of 8 base images at
        768 px, four sessions' arenas took a benchmark process past 24 GB)."""
        pixels = pixel_values.float().numpy()
        return torch.from_numpy(np.concatenate([self.vision_encoder.run(None, {"pixel_values": p[None]})[0]
                                                for p in pixels]))

    @torch.no_grad()
    def encode(self, pixel_values=None, input_ids=None, attention_mask=None, image_embeds=None):
        """``(encoder_outputs, encoder_attention_mask)`` as the PyTorch model's ``encode`` returns them."""
        if image_embeds is None:
            image_embeds = self.encode_image(pixel_values)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        text = self.embed_tokens.run(None, {"input_ids": input_ids.numpy()})[0]
        embeds = np.concatenate([image_embeds.float().numpy(), text], axis=1)
        mask = torch.cat([attention_mask.new_ones(image_embeds.shape[:2]), attention_mask], dim=1)
        hidden = self.encoder.run(None, {"inputs_embeds": embeds, "attention_mask": mask.numpy().astype(np.int64)})[0]
        return BaseModelOutput(last_hidden_state=torch.from_numpy(hidden)), mask
