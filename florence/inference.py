"""Batched inference: images + task tokens -> the published structured results.

>>> import florence
>>> pipe = florence.pipeline("path/to/Florence-2-base")            # or a hub id
>>> pipe("photo.jpg", "<OD>")
{'<OD>': {'bboxes': [[...]], 'labels': ['car'], 'scores': [0.93]}}
>>> pipe(["a.jpg", "b.jpg"], ["<CAPTION>", "<CAPTION_TO_PHRASE_GROUNDING>"], [None, "a dog on grass"])
[{'<CAPTION>': '...'}, {'<CAPTION_TO_PHRASE_GROUNDING>': {...}}]

Batches mix tasks freely: prompts are right-padded and the model's encoder mask covers each
prompt's own tokens, so a batch gives the results of one-at-a-time calls.
"""
from __future__ import annotations

import os
import warnings

import torch
from PIL import Image

from . import accel, hardware
from .generation import generate_texts
from .models import Florence2ForConditionalGeneration
from .models.files import resolve_folder
from .processing import Florence2Processor
from .processing.image import expand_images, image_files, load_image
from .regions import check_threshold, select
from .task import Task, TaskError, add_task_tokens, check_classes, get_task
from .tiling import check_tiling, merge, shifted, tiled_task, windows

__all__ = ["Pipeline", "pipeline", "expand_images"]


def pipeline(model, processor: Florence2Processor | None = None, device=None, dtype=None, backend: str = "torch",
             **options) -> "Pipeline":
    """A :class:`Pipeline` for a checkpoint folder or hub id (model and tokenizer both read from
    it), or for a model object with its ``processor``. ``dtype``: a torch dtype or its name,
    ``"auto"`` (bf16 where the device computes it natively, float32 on CPUs without it, float16 on
    GPUs without bf16) or ``None`` (float32 for a folder, the model's own for a model object).
    ``backend="onnxruntime"`` runs an ONNX folder (:func:`florence.deploy.export_onnx`) on the CPU;
    ``dtype`` then picks its graphs: ``None``/``"auto"``/``"fp32"``, ``"fp16"`` or ``"int8"``.
    ``options`` go to :class:`Pipeline`."""
    if backend not in ("torch", "onnxruntime"):
        raise ValueError(f"backend must be 'torch' or 'onnxruntime', got {backend!r}")
    if backend == "onnxruntime":
        from .deploy.runtime import OnnxFlorence2

        if not isinstance(model, (str, os.PathLike)):
            raise TypeError("backend='onnxruntime' takes an ONNX model folder (or hub id), not a model object")
        folder = resolve_folder(model)
        variant = {None: "fp32", "auto": "fp32", "float32": "fp32", "float16": "fp16", torch.float32: "fp32",
                   torch.float16: "fp16"}.get(dtype, dtype)
        model = OnnxFlorence2(folder, variant=variant, threads=options.pop("threads", None))
        return Pipeline(model, processor or Florence2Processor.from_pretrained(folder), **options)
    if isinstance(model, (str, os.PathLike)):
        folder = resolve_folder(model)
        dtype = hardware.resolve_dtype(dtype, device if device is not None else "cpu")
        model = Florence2ForConditionalGeneration.from_pretrained(folder, dtype=dtype, device=device)
        processor = processor or Florence2Processor.from_pretrained(folder)
    elif processor is None:
        raise TypeError("pipeline(model_object) needs processor=Florence2Processor(...) as well")
    return Pipeline(model, processor, device=device, dtype=dtype, **options)


def _per_image(value, n: int, what: str, is_single=lambda v: not isinstance(v, (list, tuple))) -> list:
    if is_single(value):
        return [value] * n
    if len(value) != n:
        raise ValueError(f"{n} images but {len(value)} {what}: pass one, or one per image")
    return list(value)


def _is_single_input(value) -> bool:
    """A text input for all images: None, a string, or one pixel box (a flat list of numbers)."""
    if value is None or isinstance(value, str):
        return True
    return isinstance(value, (list, tuple)) and all(isinstance(v, (int, float)) for v in value) and len(value) > 0


class Pipeline:
    """Callable batched inference over any registered tasks.

    Args:
        model: a :class:`Florence2ForConditionalGeneration` (or a model of another backend with
            the same interface, :mod:`florence.deploy.runtime`).
        processor: its :class:`Florence2Processor`.
        device: where to run (default: the model's).
        dtype: in which dtype (default: the model's; as for :func:`pipeline`, ``"auto"`` included).
        accelerate: ``"auto"`` (default: :mod:`florence.accel` on CPU, the plain model elsewhere),
            ``True`` or ``False`` (the plain model: torch, timm and transformers modules only).
        block_location_ngrams: ``False`` (default) applies ``no_repeat_ngram_size`` to text only;
            ``True`` restores the published behaviour of blocking repeated location-token n-grams
            too (which turns boxes sharing coordinates into wrong boxes).
        scores: compute per-item scores for location outputs: the probability of the item's label
            times that of its coordinates within a quarter of its size
            (:func:`florence.generation.location_scores`; one extra teacher-forced decoder pass per
            batch).
        generation: defaults for ``model.generate`` (the checkpoint's otherwise: 3 beams, up to
            1024 new tokens, no_repeat_ngram_size=3).
        score_threshold: drop the regions of location outputs scored below this (default None: keep
            all, the published behaviour); a call's ``score_threshold=`` overrides it.
        nms: class-aware non-maximum suppression of location outputs at this IoU (default None:
            off); a call's ``nms=`` overrides it. Both run after parsing, on the per-item scores
            (:func:`florence.regions.select`).
        grammar: constrain decoding to each task's grammar (``Task.grammar``: whole boxes with
            ``x2 >= x1``, polygons of three or more points, no location tokens in text, ...;
            :class:`florence.grammar.GrammarLogitsProcessor`), so no item is malformed (default
            True: it leaves well-formed outputs token for token as they were; False: the published
            decoding); a call's ``grammar=`` overrides it.
    """

    def __init__(self, model, processor: Florence2Processor, device=None, dtype=None, accelerate="auto",
                 block_location_ngrams: bool = False, scores: bool = True, generation: dict | None = None,
                 score_threshold: float | None = None, nms: float | None = None, grammar: bool = True):
        if isinstance(model, torch.nn.Module):
            dtype = hardware.resolve_dtype(dtype, device if device is not None else model.device)
            model = accel.apply(model.to(device=device, dtype=dtype).eval(), accelerate)
        self.model = model  # or a model of another backend with the same interface (florence.deploy.runtime)
        self.processor = processor
        self.block_location_ngrams = block_location_ngrams
        self.scores = scores
        self.generation = dict(generation or {})
        self.selection = _selection(score_threshold, nms)
        self.grammar = bool(grammar)
        add_task_tokens(self.model, processor.tokenizer)

    def __call__(self, images, task, text_input=None, batch_size: int = 8, errors: str = "raise",
                 progress=None, score_threshold=..., nms=..., classes=None, grammar=..., tile=None,
                 **generation_kwargs):
        """One result per image: ``{task_token: output}`` in the task's published format.

        Args:
            images: a PIL image, array, tensor, path or folder, or a list of them.
            task: a task token or name, or one per image.
            text_input: the task input (text, or a pixel box for region tasks), or one per image.
            batch_size: images per forward pass.
            errors: ``"raise"`` (default) stops at an unreadable image; ``"record"`` returns
                ``{"error": message}`` for it and goes on.
            progress: optional callable, called with the number of images finished per batch.
            score_threshold, nms: as for the pipeline (default: the pipeline's; None turns one off).
            classes: labels the output may use (a list of strings), for tasks whose items are a label
                and its location tokens (detection, grounding, dense captions, OCR regions): decoding
                is constrained to the task's grammar with these labels
                (:class:`florence.grammar.GrammarLogitsProcessor`). One task per call then.
            grammar: constrain decoding to each task's grammar (default: the pipeline's).
            tile: read large images in tiles (:mod:`florence.tiling`): a tile size in pixels, or
                ``dict(size=768, overlap=0.2)``; each image's tiles and the whole image resized run
                in batches of ``batch_size`` and their regions are merged. For tasks that locate
                things in the whole image, and ``<OCR>`` (read from ``<OCR_WITH_REGION>``'s lines).
            generation_kwargs: transformers generation arguments (num_beams, max_new_tokens, ...).
        """
        if errors not in ("raise", "record"):
            raise ValueError(f"errors must be 'raise' or 'record', got {errors!r}")
        selection = self._selection(score_threshold, nms)
        sources, single = expand_images(images)
        n = len(sources)
        tasks = [get_task(t) for t in _per_image(task, n, "tasks", lambda v: isinstance(v, (str, Task)))]
        tiling = check_tiling(tile)
        constrain = self._constrain({tiled_task(t) for t in tasks} if tiling else set(tasks), classes, grammar)
        if single and _is_several(text_input):  # several classes or phrases of one image
            inputs = [list(text_input)]
        else:
            inputs = _per_image(text_input, n, "text inputs", lambda v: _is_single_input(v) and not _is_several(v))
        if tiling:
            results = []
            for src, t, text in zip(sources, tasks, inputs):
                results.append(self._tiled(src, t, text, tiling, errors, generation_kwargs, selection, constrain,
                                           batch_size)[0])
                if progress is not None:
                    progress(1)
            return results[0] if single else results
        results = []
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            results.extend(self._batch(sources[start:stop], tasks[start:stop], inputs[start:stop],
                                       errors, generation_kwargs, selection, constrain)[0])
            if progress is not None:
                progress(stop - start)
        return results[0] if single else results

    def records(self, images, task, text_input=None, batch_size: int = 8, score_threshold=..., nms=...,
                classes=None, grammar=..., tile=None, **generation_kwargs):
        """Yield one JSON-ready record per image, in order, as each batch finishes (``florence
        infer`` writes them as JSON Lines): ``{"image", "width", "height", "task", "result"}``, or
        ``{"image", "error"}`` for an image that could not be read (the others go on). ``images``:
        files, folders or image objects (``"image"`` is then the source's text); ``task`` and
        ``text_input`` (and ``score_threshold``, ``nms``, ``classes``, ``grammar``, ``tile``) as for
        calling the pipeline, one for all images."""
        selection = self._selection(score_threshold, nms)
        sources = image_files(images if isinstance(images, (list, tuple)) else [images])
        task = get_task(task)
        tiling = check_tiling(tile)
        constrain = self._constrain({tiled_task(task) if tiling else task}, classes, grammar)
        for start in range(0, len(sources), 1 if tiling else batch_size):
            chunk = sources[start:start + (1 if tiling else batch_size)]
            if tiling:
                result, size = self._tiled(chunk[0], task, text_input, tiling, "record", generation_kwargs,
                                           selection, constrain, batch_size)
                out, sizes = [result], [size]
            else:
                out, sizes = self._batch(chunk, [task] * len(chunk), [text_input] * len(chunk), "record",
                                         generation_kwargs, selection, constrain)
            for src, result, size in zip(chunk, out, sizes):
                name = str(src) if isinstance(src, (str, os.PathLike)) else _name(src)
                yield {"image": name, **result} if size is None else \
                    {"image": name, "width": size[0], "height": size[1], "task": task.token,
                     "result": result[task.token]}

    def _constrain(self, tasks: set, classes, grammar) -> dict | None:
        """What constrains the call's decoding: ``{"classes": ...}`` (one task, whose items are labels
        and location tokens) and/or the tasks' grammars; None: nothing."""
        grammar = self.grammar if grammar is ... else bool(grammar)
        if classes is None:
            return {"classes": None} if grammar else None
        classes = check_classes(classes)
        if len(tasks) != 1:
            raise ValueError(f"classes= constrains one task's labels; this call has {len(tasks)} tasks")
        task = next(iter(tasks))
        if task.label_locations is None:
            raise TaskError(f"{task.token} does not write 'label + location tokens' items: classes= does not "
                            "apply to it")
        return {"classes": classes}

    def _constrained(self, constrain: dict | None, row_tasks: list, generation_kwargs: dict) -> dict:
        """``generation_kwargs`` with the grammars of ``row_tasks`` (one per prompt: how their items'
        scores are read), which decoding keeps to (with the call's classes) when the call is
        constrained."""
        if constrain is None:
            return {**generation_kwargs, "grammars": [t.grammar for t in row_tasks], "constrain": False}
        return {**generation_kwargs, "grammars": [t.grammar for t in row_tasks], "classes": constrain["classes"]}

    def _selection(self, score_threshold, nms) -> dict:
        """The call's region selection: the pipeline's, with what the call gives instead."""
        own = self.selection
        return _selection(own["score_threshold"] if score_threshold is ... else score_threshold,
                          own["nms"] if nms is ... else nms)

    def _batch(self, sources, tasks, inputs, errors, generation_kwargs, selection=None,
               constrain=None) -> tuple[list[dict], list]:
        """The results of one batch and each image's (width, height) (None where it failed)."""
        out: list[dict | None] = [None] * len(sources)
        sizes: list[tuple | None] = [None] * len(sources)
        rows, images, prompts, image_rows = [], [], [], []  # rows: (item, its query or None) per prompt
        for i, (src, task, text_input) in enumerate(zip(sources, tasks, inputs)):
            several = _is_several(text_input)
            if several and not task.takes_several_inputs:
                raise TaskError(f"{task.token} takes one input per image, got {len(text_input)}: {text_input!r:.100}")
            try:
                image = load_image(src)
                queries = list(text_input) if several else [text_input]
                item_prompts = [task.prompt(q, image.size) for q in queries]
            except (OSError, ValueError, TypeError) as e:
                if errors == "raise" or isinstance(e, TaskError):
                    raise
                out[i] = {"error": f"{_name(src)}: {e}"}
                continue
            rows += [(i, q if several else None) for q in queries]
            image_rows += [len(images)] * len(queries)
            images.append(image), prompts.extend(item_prompts)
            sizes[i] = image.size
        if rows:
            several = len(prompts) > len(images)  # the image of several prompts is encoded once
            generation_kwargs = self._constrained(constrain, [tasks[i] for i, _ in rows], generation_kwargs)
            texts, loc_scores = self.generate_texts(images, prompts, image_rows=image_rows if several else None,
                                                    **generation_kwargs)
            answers: dict[int, list] = {}
            for (i, query), text, sc in zip(rows, texts, loc_scores):
                answers.setdefault(i, []).append((query, tasks[i].decode_output(text, sizes[i], sc)))
            for i, got in answers.items():
                task = tasks[i]
                result = got[0][1] if got[0][0] is None else task.merge([o for _, o in got], [q for q, _ in got])
                out[i] = {task.token: select(result, task, **(selection or {}))}
        return out, sizes

    def _tiled(self, src, task, text_input, tiling, errors, generation_kwargs, selection, constrain,
               batch_size) -> tuple[dict, tuple | None]:
        """One image's result read in tiles (:mod:`florence.tiling`) and its (width, height) (None
        where it could not be read)."""
        run = tiled_task(task)
        try:
            image = load_image(src)
        except (OSError, ValueError) as e:
            if errors == "raise":
                raise
            return {"error": f"{_name(src)}: {e}"}, None
        boxes = windows(image.size, tiling)
        if len(boxes) == 1:  # no larger than a tile: read whole, as without tiles
            out, sizes = self._batch([image], [task], [text_input], "raise", generation_kwargs, selection, constrain)
            return out[0], sizes[0]
        if tiling.whole:
            boxes.append(None)
        crops = [image if w is None else image.crop(w) for w in boxes]
        outputs = []
        for start in range(0, len(crops), batch_size):
            chunk = crops[start:start + batch_size]
            out, _ = self._batch(chunk, [run] * len(chunk), [text_input] * len(chunk), "raise", generation_kwargs,
                                 None, constrain)
            outputs += [o[run.token] for o in out]
        tiles = [(run.regions(o) if w is None else [shifted(r, w[0], w[1]) for r in run.regions(o)], w)
                 for o, w in zip(outputs, boxes)]
        base = next((o for o in outputs if isinstance(o, dict) and "scores" in o), outputs[0])  # a tile with items
        regions = merge(tiles, image.size, tiling, run.labels_read)
        regions.sort(key=lambda r: run.region_kinds.index(r.kind) if r.kind in run.region_kinds else 0)  # as kept
        merged = select(run.with_regions(base, regions), run, **(selection or {}))
        return {task.token: merged if run is task else task.from_regions(run.regions(merged))}, image.size

    def generate(self, images, prompts, **generation_kwargs) -> tuple[list[str], list]:
        """Older name of :meth:`generate_texts` (``model.generate`` returns token ids; this returns
        texts), kept with a warning."""
        warnings.warn("Pipeline.generate is now Pipeline.generate_texts", DeprecationWarning, stacklevel=2)
        return self.generate_texts(images, prompts, **generation_kwargs)

    def generate_texts(self, images, prompts, image_rows=None, **generation_kwargs) -> tuple[list[str], list]:
        """Generated texts (special tokens kept) and, per row, the log-probabilities of its location
        tokens (None when scores are off): :func:`florence.generation.generate_texts` on images and
        prompts, one prompt per image, or with ``image_rows`` (each prompt's image index) several
        prompts of an image, which is encoded once."""
        if image_rows is None:
            batch = self.processor(images=images, text=prompts)
        else:
            batch = {**self.processor(images=images), **self.processor(text=prompts)}
        # pop: generate_texts then holds the only reference to the pixels and drops them once encoded
        return generate_texts(self.model, self.processor, batch.pop("pixel_values"), batch["input_ids"],
                              batch["attention_mask"], block_location_ngrams=self.block_location_ngrams,
                              scores=self.scores, image_rows=image_rows, **{**self.generation, **generation_kwargs})


def _is_several(value) -> bool:
    """Several text inputs for one image: a list of strings."""
    return isinstance(value, (list, tuple)) and len(value) > 0 and all(isinstance(v, str) for v in value)


def _selection(score_threshold, nms) -> dict:
    return {"score_threshold": check_threshold(score_threshold, "score_threshold"),
            "nms": check_threshold(nms, "nms", low_open=True)}


def _name(src) -> str:
    if isinstance(src, (str, os.PathLike)):
        return str(src)
    return f"{type(src).__name__} image" if not isinstance(src, Image.Image) else "PIL image"
