"""The mmengine face of Florence-2: a ``BaseModel`` with its data preprocessor.

``mode="loss"`` returns the token cross-entropy (pad labels never count), plus optional
training-only losses on the image tokens that let a model trained from scratch learn in a short
run (:class:`PixelReconstructionHead`, :class:`DenseObjectHead`); ``mode="predict"`` generates,
parses through each sample's task plugin and returns the samples with ``pred`` filled in for the
metrics.
"""
from __future__ import annotations

import contextlib
import copy
import importlib
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseDataPreprocessor, BaseModel

from .. import accel, hardware
from ..data.multitask import ImageTasks
from ..deploy import write_model_folder
from ..generation import generate_texts
from ..models import Florence2ForConditionalGeneration
from ..processing import Florence2Processor, build_tokenizer, load_tokenizer
from ..processing.quantizer import NUM_BINS, loc_token
from ..registry import MODELS
from ..task import add_task_tokens, get_task

__all__ = ["Florence2Model", "Florence2DataPreprocessor", "PixelReconstructionHead", "build_tokenizer_from_cfg"]


def _call_named(spec: str):
    """The result of calling the function a ``"module:function"`` string names."""
    module, _, name = spec.partition(":")
    if not module or not name:
        raise ValueError(f"expected 'module:function', got {spec!r}")
    return getattr(importlib.import_module(module), name)()


def build_tokenizer_from_cfg(cfg, pretrained=None):
    """A tokenizer from a folder path, from ``dict(texts_from="module:function", vocab_size=N)`` (a
    byte-level BPE trained offline on that function's texts; deterministic), or from the
    ``pretrained`` checkpoint folder when ``cfg`` is None."""
    if cfg is None:
        if pretrained is None:
            raise ValueError("give tokenizer= (a folder, or dict(texts_from=..., vocab_size=...)) or pretrained=")
        from ..models.files import resolve_folder

        return load_tokenizer(resolve_folder(pretrained))
    if isinstance(cfg, str):
        return load_tokenizer(cfg)
    if isinstance(cfg, dict) and "texts_from" in cfg:
        texts = _call_named(cfg["texts_from"])
        return build_tokenizer(texts, vocab_size=cfg.get("vocab_size", 1000))
    raise ValueError(f"tokenizer must be a folder or dict(texts_from='module:function', vocab_size=N), got {cfg!r}")


class Florence2DataPreprocessor(BaseDataPreprocessor):
    """Stacks pixels, tokenises prompts and targets per batch (right padding), and makes labels:
    ``<s> target </s>`` with padding set to -100. A batch holding :class:`~florence.data.ImageTasks`
    (several tasks of one image) is flattened into its samples, with ``image_index`` giving each
    sample's row of ``pixel_values``."""

    def __init__(self, tokenizer, max_prompt_tokens: int = 256, max_target_tokens: int = 1024):
        super().__init__()
        self.tokenizer = tokenizer
        self.max_prompt_tokens = max_prompt_tokens
        self.max_target_tokens = max_target_tokens

    def _tokenize(self, texts, max_length):
        return self.tokenizer(list(texts), padding=True, padding_side="right", truncation=True,
                              max_length=max_length, return_tensors="pt")

    def forward(self, data: dict, training: bool = False) -> dict:
        samples, image_index = [], []
        for i, item in enumerate(data["data_samples"]):
            group = item.samples if isinstance(item, ImageTasks) else [item]
            samples.extend(group)
            image_index.extend([i] * len(group))
        pixels = data["inputs"]
        pixels = torch.stack(pixels) if isinstance(pixels, (list, tuple)) else pixels
        prompts = self._tokenize([s.prompt for s in samples], self.max_prompt_tokens)
        out = dict(pixel_values=pixels, input_ids=prompts["input_ids"], attention_mask=prompts["attention_mask"],
                   data_samples=samples)
        if len(samples) != len(pixels):  # one image per sample otherwise: nothing to record
            out["image_index"] = torch.tensor(image_index)
        if training:
            targets = self._tokenize([s.target for s in samples], self.max_target_tokens)
            out["labels"] = targets["input_ids"].masked_fill(targets["attention_mask"] == 0, -100)
        return self.cast_data(out)


def location_init_(model, tokenizer, kind: str = "coordinate", scale: float | None = None):
    """Give ``<loc_0>`` ... ``<loc_999>`` embeddings that vary smoothly with the bin, for training
    from scratch (1000 independent random rows each see a few dozen examples in a short run).

    ``"sinusoidal"``: sines and cosines of the bin index at geometric frequencies, so neighbouring
    bins start close and the tied output layer's location logits are smooth.
    ``"coordinate"``: the same, but the first dimensions hold the coordinate itself, ``u`` (in
    [-1, 1]), ``1 - 3u^2`` and a constant, ten times the embedding scale. With the tied output layer
    a decoder state ``h`` then scores bin ``u`` as ``a u - b u^2 + c``: a bump at ``a / 2b``, so
    emitting a coordinate is a linear read-out of a number (as in regression) instead of a match
    against 1000 learned rows, and an input location token carries its value linearly (a polygon
    point is a linear mix of the box's coordinates). Measured on the learning test's task
    (<REGION_TO_SEGMENTATION>, 64 px, 300 steps): mean bin error 87 -> 47, mIoU 0.00 -> 0.21."""
    emb = model.get_input_embeddings().weight
    d = emb.shape[1]
    ids = tokenizer.convert_tokens_to_ids([loc_token(i) for i in range(NUM_BINS)])
    std = emb.detach().std().item()
    pos = torch.arange(NUM_BINS, dtype=torch.float32)[:, None] / NUM_BINS
    freqs = torch.exp(torch.linspace(0, math.log(NUM_BINS / 4), d // 2))[None] * math.pi
    table = torch.cat([torch.sin(pos * freqs), torch.cos(pos * freqs)], dim=1)  # (1000, d // 2 * 2)
    table = table * (scale if scale is not None else std * math.sqrt(2))
    if kind == "coordinate":
        k = d // 8  # dimensions per feature: 3k of d carry the value, the rest stay sinusoidal
        u = 2 * (torch.arange(NUM_BINS, dtype=torch.float32) + 0.5) / NUM_BINS - 1  # (1000,), in [-1, 1]
        a = 10 * std
        table[:, :k] = a * u[:, None]
        table[:, k:2 * k] = a * (1 - 3 * u[:, None] ** 2) / 2  # zero mean over the bins
        table[:, 2 * k:3 * k] = a
    elif kind != "sinusoidal":
        raise ValueError(f"location_init must be None, 'sinusoidal' or 'coordinate', got {kind!r}")
    with torch.no_grad():
        emb[ids, : table.shape[1]] = table.to(emb.dtype)


def _grid(n: int, height: int, width: int) -> tuple[int, int]:
    """(h, w) of the ``n`` grid tokens of a ``height x width`` image (the tower's stride is square)."""
    stride = math.sqrt(height * width / n)
    h, w = round(height / stride), round(width / stride)
    if h * w != n:
        raise ValueError(f"cannot place {n} image tokens on a grid for a {height}x{width} image")
    return h, w


class DenseObjectHead(nn.Module):
    """Auxiliary loss for training from scratch: every grid token of the image (as the encoder sees
    it) classifies what lies at its cell centre (background or one of ``classes``) and, inside an
    object, regresses that object's box (normalised x1, y1, x2, y2; L1). Targets come from each
    sample's ``objects`` (``{"bboxes": [[x1, y1, x2, y2], ...], "labels": [...]}`` in original-image
    pixels); samples without them do not count. An object also owns the cell holding its centre, so
    no object is too small to have a token; where objects overlap the smaller one wins.

    Why: the text loss teaches location tokens slowly (a few dozen examples per bin in a short
    run) and the random tower's features do not say where things are; asking each token, by a
    *linear* read-out, for the class and box under it makes the encoder's tokens carry both, so the
    decoder only has to find the right token and copy a number (with ``location_init="coordinate"``
    a coordinate is a linear direction of the location embeddings). Like the pixel loss it is not
    part of the Florence-2 model and is dropped on export.

    Args:
        dim: token width.
        classes: label names, or ``"module:function"`` returning them.
        weight: weight of the class loss; box_weight: weight of the box L1 loss.
    """

    def __init__(self, dim: int, classes, weight: float = 1.0, box_weight: float = 5.0):
        super().__init__()
        self.classes = list(_call_named(classes) if isinstance(classes, str) else classes)
        if not self.classes or weight <= 0 or box_weight < 0:
            raise ValueError(f"objects head needs classes, weight > 0 and box_weight >= 0; got {len(self.classes)} "
                             f"classes, weight={weight}, box_weight={box_weight}")
        self.index = {c: i + 1 for i, c in enumerate(self.classes)}  # 0 = background
        self.weight, self.box_weight = float(weight), float(box_weight)
        self.cls = nn.Linear(dim, len(self.classes) + 1)
        self.box = nn.Linear(dim, 4)

    def targets(self, objects, image_size, h: int, w: int):
        """(h*w,) class ids (-100: no objects given) and (h*w, 4) normalised boxes of one sample."""
        cls = torch.full((h * w,), -100 if objects is None else 0, dtype=torch.long)
        box = torch.zeros(h * w, 4)
        if not objects:
            return cls, box
        bboxes, labels = objects.get("bboxes"), objects.get("labels")
        if bboxes is None or labels is None or len(bboxes) != len(labels) or any(len(b) != 4 for b in bboxes):
            raise ValueError("objects must be {'bboxes': [[x1, y1, x2, y2], ...], 'labels': [...]} with one label "
                             f"per box; got {objects!r}")
        W, H = image_size
        cx = (torch.arange(w, dtype=torch.float32) + 0.5) * W / w  # cell centres, original pixels
        cy = (torch.arange(h, dtype=torch.float32) + 0.5) * H / h
        for i in sorted(range(len(bboxes)), key=lambda i: -_area(bboxes[i])):  # large first: small ones overwrite
            label = labels[i]
            if label not in self.index:
                raise ValueError(f"objects label {label!r} is not one of the head's classes {self.classes}")
            x1, y1, x2, y2 = (float(v) for v in bboxes[i])
            inside = ((cy >= y1) & (cy <= y2))[:, None] & ((cx >= x1) & (cx <= x2))[None]  # (h, w)
            r = min(max(int((y1 + y2) / 2 / H * h), 0), h - 1)
            c = min(max(int((x1 + x2) / 2 / W * w), 0), w - 1)
            inside[r, c] = True
            inside = inside.flatten()
            cls[inside] = self.index[label]
            box[inside] = torch.tensor([x1 / W, y1 / H, x2 / W, y2 / H])
        return cls, box

    def forward(self, pixel_values: torch.Tensor, image_embeds: torch.Tensor, objects: list) -> dict:
        h, w = _grid(image_embeds.shape[1] - 1, *pixel_values.shape[-2:])
        targets = [self.targets(o, size, h, w) for o, size in objects]
        cls = torch.stack([t[0] for t in targets]).to(image_embeds.device)  # (B, h*w)
        box = torch.stack([t[1] for t in targets]).to(image_embeds.device)  # (B, h*w, 4)
        # (B, h*w, D); the pooled token has no cell. In the head's dtype (float32 under autocast,
        # bf16 when DeepSpeed holds the model in bf16); the losses in float32
        tokens = image_embeds[:, 1:].to(self.cls.weight.dtype)
        if not (cls >= 0).any():  # both heads stay in the graph: DDP expects a gradient for every parameter
            zero = (self.cls(tokens).float().sum() + self.box(tokens).float().sum()) * 0
            return {"loss_objects": zero, "loss_boxes": zero}
        loss_cls = F.cross_entropy(self.cls(tokens).float().flatten(0, 1), cls.flatten(), ignore_index=-100)
        fg = cls > 0
        pred = self.box(tokens).float()[fg]
        loss_box = F.l1_loss(pred, box[fg]) if fg.any() else pred.sum() * 0
        return {"loss_objects": self.weight * loss_cls, "loss_boxes": self.box_weight * loss_box}


def _area(box) -> float:
    return max(0.0, float(box[2]) - float(box[0])) * max(0.0, float(box[3]) - float(box[1]))


class PixelReconstructionHead(nn.Module):
    """Auxiliary loss for training from scratch: every grid token of the image (after the projector,
    as the encoder sees it) predicts its own image cell at ``cell x cell`` resolution; the loss is the
    mean squared error on the normalised pixels, times ``weight``.

    Why: with a randomly initialised DaViT and only the text loss, the decoder learns the language
    prior in the first ~100 steps while the tower's random features (progressively scrambled by
    each random stage) are not yet readable; the text gradient then pushes the image tokens towards
    a constant and the model never uses the image (measured: held-out caption loss identical with
    the images swapped). Asking the tokens to keep their own pixels keeps them local and
    informative until the decoder learns to read them. The head is not part of the Florence-2
    model and is dropped on export; fine-tuning a pretrained checkpoint does not need it."""

    def __init__(self, dim: int, cell: int = 8, weight: float = 1.0):
        super().__init__()
        if cell < 1 or weight <= 0:
            raise ValueError(f"reconstruction needs cell >= 1 and weight > 0, got cell={cell}, weight={weight}")
        self.cell, self.weight = int(cell), float(weight)
        self.proj = nn.Linear(dim, 3 * self.cell ** 2)

    def forward(self, pixel_values: torch.Tensor, image_embeds: torch.Tensor) -> torch.Tensor:
        B, _, H, W = pixel_values.shape
        h, w = _grid(image_embeds.shape[1] - 1, H, W)  # the first token is the pooled one
        target = F.adaptive_avg_pool2d(pixel_values.float(), (h * self.cell, w * self.cell))
        target = F.unfold(target, self.cell, stride=self.cell).transpose(1, 2)  # (B, h*w, 3*cell*cell)
        tokens = image_embeds[:, 1:].to(self.proj.weight.dtype)  # float32 under autocast; bf16 in a bf16 model
        return self.weight * F.mse_loss(self.proj(tokens).float(), target)


def _matches(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def freeze_(model: nn.Module, prefixes) -> tuple:
    """Freeze the parameters under each name prefix; an unknown prefix is an error."""
    prefixes = (prefixes,) if isinstance(prefixes, str) else tuple(prefixes)
    params = dict(model.named_parameters())
    for prefix in prefixes:
        hits = [n for n in params if _matches(n, prefix)]
        if not hits:
            tops = sorted({n.split(".")[0] for n in params})
            raise ValueError(f"freeze: {prefix!r} names no parameters of the model; parameter names start with "
                             f"{tops} (e.g. 'vision_tower', 'language_model.model.encoder')")
        for n in hits:
            params[n].requires_grad_(False)
    modules = dict(model.named_modules())
    return tuple(p for p in prefixes if p in modules)  # the ones to keep in eval mode


def add_lora_(model: nn.Module, lora: dict) -> None:
    """LoRA adapters through peft, after checking that every target module exists."""
    from peft import LoraConfig, inject_adapter_in_model

    cfg = dict(lora)
    targets = cfg.get("target_modules")
    if not targets:
        raise ValueError("lora needs target_modules, e.g. ['q_proj', 'k_proj', 'v_proj', 'out_proj', 'qkv']")
    targets = [targets] if isinstance(targets, str) else list(targets)
    linear = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    unknown = [t for t in targets if not any(n == t or n.endswith("." + t) for n in linear)]
    if unknown:
        leaves = sorted({n.rsplit(".", 1)[-1] for n in linear})
        raise ValueError(f"lora target_modules {unknown} match no linear layer of the model; its linear layers "
                         f"are named {leaves}")
    cfg["target_modules"] = targets
    inject_adapter_in_model(LoraConfig(**cfg), model)  # freezes everything but the adapters


def merge_lora_(model: nn.Module) -> None:
    """Fold LoRA adapters into their base layers and put the plain layers back (in place)."""
    from peft.tuners.lora import LoraLayer

    for name, module in list(model.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge()
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, module.get_base_layer())


@MODELS.register_module()
class Florence2Model(BaseModel):
    """Florence-2 for mmengine's Runner.

    Args:
        model: config of :class:`Florence2ForConditionalGeneration` (e.g. ``dict(preset="tiny")``;
            ``vocab_size`` defaults to the tokenizer's size).
        pretrained: a checkpoint folder or hub id to start from instead (either layout).
        tokenizer: see :func:`build_tokenizer_from_cfg` (default: the pretrained folder's).
        generation: generation arguments for ``mode="predict"`` (default: the checkpoint's).
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
        max_prompt_tokens, max_target_tokens: truncation lengths.
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
        with contextlib.nullcontext() if init_seed is None else torch.random.fork_rng():
            if init_seed is not None:
                torch.manual_seed(init_seed)
            self._build(model, pretrained, tokenizer, generation, block_location_ngrams, location_init,
                        reconstruction, objects, freeze, lora, gradient_checkpointing, max_prompt_tokens,
                        max_target_tokens, accelerate, init_cfg)

    def _build(self, model, pretrained, tokenizer, generation, block_location_ngrams, location_init, reconstruction,
               objects, freeze, lora, gradient_checkpointing, max_prompt_tokens, max_target_tokens, accelerate,
               init_cfg):
        tokenizer = build_tokenizer_from_cfg(tokenizer, pretrained)
        super().__init__(data_preprocessor=Florence2DataPreprocessor(tokenizer, max_prompt_tokens, max_target_tokens),
                         init_cfg=init_cfg)
        if (model is None) == (pretrained is None):
            raise ValueError("Florence2Model needs exactly one of model=dict(...) (from scratch) or pretrained=PATH")
        if pretrained is not None:
            self.model = Florence2ForConditionalGeneration.from_pretrained(pretrained)
        else:
            cfg = dict(model)
            cfg.setdefault("vocab_size", len(tokenizer))
            self.model = Florence2ForConditionalGeneration(cfg)
        accel.apply(self.model, accelerate, device=hardware.default_device())  # the runner moves it there
        if location_init is not None:
            location_init_(self.model, tokenizer, location_init)
        add_task_tokens(self.model, tokenizer)
        self.reconstruction = (PixelReconstructionHead(self.model.config.text.d_model, **reconstruction)
                               if reconstruction else None)
        self.objects = DenseObjectHead(self.model.config.text.d_model, **objects) if objects else None
        self.frozen = freeze_(self.model, freeze)
        if lora:
            add_lora_(self.model, lora)
        if gradient_checkpointing:
            self.model.vision_tower.set_grad_checkpointing(True)
            self.model.language_model.activation_checkpointing_enable()
        self.processor = Florence2Processor(tokenizer)
        self.generation = dict(generation or {})
        self.block_location_ngrams = block_location_ngrams

    @property
    def tokenizer(self):
        return self.processor.tokenizer

    def train(self, mode: bool = True):
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
        texts, scores = generate_texts(self.model if model is None else model, self.processor, pixel_values,
                                       input_ids, attention_mask,
                                       block_location_ngrams=self.block_location_ngrams, **self.generation)
        for sample, text, sc in zip(data_samples, texts, scores):
            sample.text = text
            sample.pred = get_task(sample.task).decode_output(text, sample.image_size, sc)
        return data_samples
