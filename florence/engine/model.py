"""The mmengine face of Florence-2: a ``BaseModel`` with its data preprocessor.

``mode="loss"`` returns the token cross-entropy (pad labels never count), plus optional
training-only losses on the image tokens that let a model trained from scratch learn in a short
run (:class:`~florence.engine.heads.PixelReconstructionHead`,
:class:`~florence.engine.heads.DenseObjectHead`); ``mode="predict"`` generates, parses through each
sample's task plugin and returns the samples with ``pred`` filled in for the metrics. What it is
built from lives beside it: ``preprocessor.py`` (tokenizer and batches), ``heads.py`` (the
training-only heads), ``finetune.py`` (location init, freezing, LoRA).
"""
from __future__ import annotations

import contextlib
import copy

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel

from .. import accel, hardware
from ..deploy import write_model_folder
from ..generation import generate_texts
from ..models import Florence2ForConditionalGeneration
from ..models.tower import get_tower
from ..processing import Florence2Processor
from ..registry import MODELS
from ..task import add_task_tokens, get_task
from .finetune import add_lora_, freeze_, location_init_, merge_lora_
from .heads import DenseObjectHead, PixelReconstructionHead
from .preprocessor import Florence2DataPreprocessor, build_tokenizer_from_cfg

__all__ = ["Florence2Model", "Florence2DataPreprocessor", "PixelReconstructionHead", "DenseObjectHead",
           "build_tokenizer_from_cfg"]


@MODELS.register_module()
class Florence2Model(BaseModel):
    """Florence-2 for mmengine's Runner.

    Args:
        model: config of :class:`Florence2ForConditionalGeneration` (e.g. ``dict(preset="tiny")``;
            ``vocab_size`` defaults to the tokenizer's size).
        pretrained: a checkpoint folder or hub id to start from instead (either layout).
        tokenizer: see :func:`build_tokenizer_from_cfg` (default: the pretrained folder's).
        generation: generation arguments for ``mode="predict"`` (default: the checkpoint's);
            ``grammar=True`` keeps each sample's output to its task's grammar.
        block_location_ngrams: the published n-gram blocking over location tokens (default off).
        location_init: initial location-token embeddings for training from scratch (see
            :func:`location_init_`): ``"sinusoidal"`` or ``"coordinate"``.
        reconstruction: ``dict(weight=1.0, cell=8)`` adds :class:`PixelReconstructionHead`'s loss
            (``loss_pixels`` in the logs) when training; for towers trained from scratch.
        objects: ``dict(classes=[...] or "module:function", weight=1.0, box_weight=5.0)`` adds
            :class:`DenseObjectHead`'s losses (``loss_objects``, ``loss_boxes``) for samples that
            carry ``objects``; for training from scratch.
        freeze: parts to freeze, as parameter-name prefixes of the Florence-2 model (e.g.
            ``("vision_tower",)``, ``("vision_tower", "image_projection", "language_model.model.encoder")``):
            no gradients, left out of the optimizer (give the optim wrapper a ``paramwise_cfg``, as
            the base schedule does), kept in eval mode. A prefix that names nothing is an error.
        lora: ``dict(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], lora_dropout=0.05, ...)``
            (``peft.LoraConfig`` arguments): LoRA adapters on those modules, everything else frozen.
            Every target must name modules of the model (peft alone accepts a partly-unknown list).
        gradient_checkpointing: recompute activations in the backward pass (DaViT stages and BART
            layers) to save memory.
        accelerate: ``"auto"`` (default: :mod:`florence.accel` when the run is on CPU, the plain
            model on a GPU), ``True`` or ``False``.
        max_prompt_tokens: truncation length of the prompts.
        max_target_tokens: truncation length of the targets.
        init_seed: when given, the random initialisation (model from scratch, location tokens,
            training-only heads, LoRA) draws from its own generator seeded with it: the same
            weights under any runner (mmengine's Runner and FlexibleRunner draw different amounts
            of randomness before building the model); the global RNG is left as it was.
    """

    def __init__(self, model: dict | None = None, pretrained: str | None = None, tokenizer=None,
                 generation: dict | None = None, block_location_ngrams: bool = False,
                 location_init: str | None = None, reconstruction: dict | None = None, objects: dict | None = None,
                 freeze=(), lora: dict | None = None, gradient_checkpointing: bool = False,
                 max_prompt_tokens: int = 256, max_target_tokens: int = 1024, accelerate="auto", init_seed=None,
                 init_cfg=None):
        if (model is None) == (pretrained is None):
            raise ValueError("Florence2Model needs exactly one of model=dict(...) (from scratch) or pretrained=PATH")
        with contextlib.nullcontext() if init_seed is None else torch.random.fork_rng():
            if init_seed is not None:
                torch.manual_seed(init_seed)
            tokenizer = build_tokenizer_from_cfg(tokenizer, pretrained)
            preprocessor = Florence2DataPreprocessor(tokenizer, max_prompt_tokens=max_prompt_tokens,
                                                     max_target_tokens=max_target_tokens)
            super().__init__(data_preprocessor=preprocessor, init_cfg=init_cfg)
            self.model = self._florence2(model=model, pretrained=pretrained, tokenizer=tokenizer)
            accel.apply(self.model, accelerate, device=hardware.default_device())  # the runner moves it there
            self._prepare_training(tokenizer, location_init=location_init, reconstruction=reconstruction,
                                   objects=objects, freeze=freeze, lora=lora,
                                   gradient_checkpointing=gradient_checkpointing)
        self.processor = Florence2Processor(tokenizer)
        self.generation = dict(generation or {})
        self.block_location_ngrams = block_location_ngrams

    @staticmethod
    def _florence2(*, model, pretrained, tokenizer) -> Florence2ForConditionalGeneration:
        """The Florence-2 model: loaded from ``pretrained`` or built from the ``model`` config."""
        if pretrained is not None:
            return Florence2ForConditionalGeneration.from_pretrained(pretrained)
        cfg = dict(model)
        cfg.setdefault("vocab_size", len(tokenizer))
        return Florence2ForConditionalGeneration(cfg)

    def _prepare_training(self, tokenizer, *, location_init, reconstruction, objects, freeze, lora,
                          gradient_checkpointing):
        """The run's starting point and what it trains (see the class's arguments)."""
        if location_init is not None:
            location_init_(self.model, tokenizer, location_init)
        add_task_tokens(self.model, tokenizer)
        width = self.model.config.text.d_model
        self.reconstruction = PixelReconstructionHead(width, **reconstruction) if reconstruction else None
        self.objects = DenseObjectHead(width, **objects) if objects else None
        self.frozen = freeze_(self.model, freeze)
        if lora:
            add_lora_(self.model, lora)
        if gradient_checkpointing:
            get_tower(self.model.config.vision).set_grad_checkpointing(self.model.vision_tower)
            self.model.language_model.activation_checkpointing_enable()

    @property
    def tokenizer(self):
        """The tokenizer (the processor's)."""
        return self.processor.tokenizer

    def train(self, mode: bool = True):
        """``nn.Module.train``, with the frozen parts kept in eval mode."""
        super().train(mode)
        for name in self.frozen:  # frozen parts stay in eval mode (drop-path, dropout off)
            self.model.get_submodule(name).eval()
        return self

    def export(self, folder, layout: str = "native", image_size: int = 768):
        """Write the trained model as a Florence-2 checkpoint folder (weights, config, tokenizer and
        ``preprocessor_config.json`` with ``image_size``, the side the model was trained at) that
        :func:`florence.pipeline` and ``from_pretrained`` load, and in the native layout transformers'
        ``AutoProcessor`` and Florence-2 model too (:func:`florence.deploy.write_model_folder`); LoRA adapters are merged into the
        weights, the training-only heads (reconstruction, objects) are left out. The folder is written
        atomically: a kill mid-export leaves the previous folder (or none), never a partial one."""
        model = copy.deepcopy(self.model)
        merge_lora_(model)
        write_model_folder(model, self.tokenizer, folder, image_size=image_size, layout=layout)

    def forward(self, pixel_values, input_ids, attention_mask=None, labels=None, data_samples=None,
                image_index=None, mode: str = "tensor"):
        """``image_index`` (from the data preprocessor when samples share images): sample ``j`` is
        about image ``pixel_values[image_index[j]]``; in ``mode="loss"`` each image is encoded once."""
        if mode == "loss":
            return self.loss(pixel_values, input_ids, attention_mask, labels, data_samples, image_index)
        if image_index is not None:  # generation and logits work per sample
            pixel_values = pixel_values[image_index.to(pixel_values.device)]
        if mode == "predict":
            return self.predict(pixel_values, input_ids, attention_mask, data_samples)
        if mode == "tensor":
            return self.model(pixel_values, input_ids, attention_mask, labels=labels).logits
        raise ValueError(f"mode must be 'loss', 'predict' or 'tensor', got {mode!r}")

    def parse_losses(self, losses: dict):
        """mmengine's sum of the ``loss*`` terms; the total carries ``num_tokens`` (the target tokens
        its text loss averages) for :class:`~florence.engine.AutocastOptimWrapper`'s token-weighted
        accumulation."""
        tokens = losses.pop("num_tokens", None)
        loss, log_vars = super().parse_losses(losses)
        if tokens is not None:
            loss.num_tokens = int(tokens)
        return loss, log_vars

    def loss(self, pixel_values, input_ids, attention_mask, labels, data_samples=None, image_index=None) -> dict:
        """The text loss (``loss``), the training-only heads' losses when present, and ``num_tokens``."""
        losses = self._losses(pixel_values, input_ids, attention_mask, labels, data_samples, image_index)
        losses["num_tokens"] = (labels != -100).sum()
        return losses

    def _losses(self, pixel_values, input_ids, attention_mask, labels, data_samples, image_index) -> dict:
        if self.reconstruction is None and self.objects is None and image_index is None:
            return {"loss": self.model(pixel_values, input_ids, attention_mask, labels=labels).loss}
        image_embeds = self.model.encode_image(pixel_values)  # once per image
        per_sample = image_embeds if image_index is None else image_embeds[image_index.to(image_embeds.device)]
        out = self.model(None, input_ids, attention_mask, labels=labels, image_embeds=per_sample)
        losses = {"loss": out.loss}
        if self.reconstruction is not None:
            losses["loss_pixels"] = self.reconstruction(pixel_values, image_embeds)
        if self.objects is not None:
            if data_samples is None:
                raise ValueError("the objects head needs data_samples (each sample's extra['objects']) in mode='loss'")
            if image_index is not None:  # the first sample of each image speaks for it
                firsts = {}
                for j, i in enumerate(image_index.tolist()):
                    firsts.setdefault(i, j)
                data_samples = [data_samples[firsts[i]] for i in range(len(pixel_values))]
            objects = [(s.extra.get("objects"), s.image_size) for s in data_samples]
            losses.update(self.objects(pixel_values, image_embeds, objects))
        return losses

    def predict(self, pixel_values, input_ids, attention_mask, data_samples, model=None):
        """Generate and parse each sample's output; ``model``: another model with the same interface to
        generate with (e.g. :class:`florence.deploy.runtime.OnnxFlorence2`), default the trained one."""
        generation = dict(self.generation)
        # each sample's task grammar: how its items' scores are read, and with grammar=True what
        # decoding keeps to (florence.grammar)
        generation["constrain"] = bool(generation.pop("grammar", False))
        generation["grammars"] = [get_task(sample.task).grammar for sample in data_samples]
        texts, scores = generate_texts(self.model if model is None else model, self.processor, pixel_values,
                                       input_ids, attention_mask,
                                       block_location_ngrams=self.block_location_ngrams, **generation)
        for sample, text, sc in zip(data_samples, texts, scores):
            sample.text = text
            sample.pred = get_task(sample.task).decode_output(text, sample.image_size, sc)
        return data_samples
