"""A model folder as ONNX graphs in the layout onnxruntime users and transformers.js load
(``onnx-community/Florence-2-*``): the folder's JSON files at the top, and under ``onnx/``

=============================  ==============================================================
``vision_encoder.onnx``        ``pixel_values`` (B, 3, H, W) -> ``image_features`` (B, N, D):
                               DaViT, positions, pooling, projection and norm
``embed_tokens.onnx``          ``input_ids`` (B, T) -> ``inputs_embeds`` (B, T, D)
``encoder_model.onnx``         ``inputs_embeds`` + ``attention_mask`` -> ``last_hidden_state``
``decoder_model_merged.onnx``  ``inputs_embeds``, ``encoder_hidden_states``, ``encoder_attention_mask``,
                               ``past_key_values.{i}.{decoder,encoder}.{key,value}`` and
                               ``use_cache_branch`` -> ``logits`` and ``present.{i}...``: the first
                               step (``use_cache_branch`` false: cross-attention keys and values
                               computed from the encoder output) and the cached steps in one file
=============================  ==============================================================

plus ``_fp16`` (float16 weights and compute, float32 inputs and outputs) and ``_int8`` / ``_quantized``
(dynamic int8 quantization of the matrix multiplications) variants of each when asked for. Batch,
image size, prompt, encoder and past lengths are all dynamic.

Exporters: torch's TorchScript exporter (``torch.onnx.export(dynamo=False)``) for every graph. The
dynamo exporter was tried first: on DaViT it cannot keep height and width dynamic (torch.export's
symbolic shapes cannot prove the window-padding guards; minutes of solving, then a constraint error),
and it fails to decompose ``torch.cond`` around BART's decoder, which would have given the merged
decoder directly. The merged decoder is therefore the first-step and cached-step graphs exported
separately and joined under one ``If`` node by :func:`merge_decoders` (optimum-onnx's ``merge_decoders``
does the same, but its only release requires transformers < 4.58).
"""
from __future__ import annotations

import hashlib
import shutil
import warnings
from pathlib import Path

import torch
import torch.nn as nn

__all__ = ["GRAPHS", "QUANTIZE", "export_onnx", "merge_decoders", "past_names"]

GRAPHS = ("vision_encoder", "embed_tokens", "encoder_model", "decoder_model_merged")
OPSET = 17


def past_names(num_layers: int, prefix: str = "past_key_values") -> list[str]:
    """Cache tensor names in the onnx-community order: per layer decoder key/value, encoder key/value."""
    return [f"{prefix}.{i}.{part}.{kv}" for i in range(num_layers) for part in ("decoder", "encoder")
            for kv in ("key", "value")]


# ---- the four graphs, as modules over the plain model's own submodules -------------------------------
class _VisionEncoder(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, pixel_values):
        return self.model.encode_image(pixel_values, whole_batch=True)


class _EmbedTokens(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.embed = model.get_input_embeddings()

    def forward(self, input_ids):
        return self.embed(input_ids)


class _Encoder(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.encoder = model.language_model.get_encoder()

    def forward(self, inputs_embeds, attention_mask):
        return self.encoder(inputs_embeds=inputs_embeds, attention_mask=attention_mask).last_hidden_state


class _Decoder(nn.Module):
    """One decoding call of BART's decoder + LM head over an explicit cache: with ``past`` given, the
    self- and cross-attention caches come in as inputs; without, there is no self-attention past and
    the cross-attention keys and values are computed from ``encoder_hidden_states``."""

    def __init__(self, model):
        super().__init__()
        self.lm = model.language_model

    def forward(self, encoder_attention_mask, encoder_hidden_states, inputs_embeds, *past):
        from transformers.cache_utils import DynamicCache, EncoderDecoderCache

        cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        for i in range(len(past) // 4):
            cache.self_attention_cache.update(past[4 * i], past[4 * i + 1], i)
            cache.cross_attention_cache.update(past[4 * i + 2], past[4 * i + 3], i)
            cache.is_updated[i] = True
        hidden = self.lm.model.decoder(inputs_embeds=inputs_embeds, encoder_hidden_states=encoder_hidden_states,
                                       encoder_attention_mask=encoder_attention_mask, past_key_values=cache,
                                       use_cache=True).last_hidden_state
        logits = self.lm.lm_head(hidden) + self.lm.final_logits_bias.to(hidden.dtype)
        present = []
        for self_layer, cross_layer in zip(cache.self_attention_cache.layers, cache.cross_attention_cache.layers):
            present += [self_layer.keys, self_layer.values, cross_layer.keys, cross_layer.values]
        return (logits, *present)


def _export(module, args, path: Path, inputs: dict, outputs: dict):
    """TorchScript export; ``inputs``/``outputs``: name -> {axis: dynamic dimension name}."""
    with warnings.catch_warnings():  # tracer and deprecation warnings: the graphs are checked by the tests
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), tuple(args), str(path), input_names=list(inputs), output_names=list(outputs),
                          dynamic_axes={**{k: v for k, v in inputs.items() if v}, **outputs}, opset_version=OPSET,
                          do_constant_folding=True, dynamo=False)


def _export_graphs(model, onnx_dir: Path, image_size: int):
    """The four fp32 graphs of ``model`` (florence's plain Florence2ForConditionalGeneration) into ``onnx_dir``."""
    text = model.config.text
    d, layers, heads = text.d_model, text.decoder_layers, text.decoder_attention_heads
    tokens = {0: "batch_size", 1: "sequence_length"}
    # example inputs chosen so that no shape-dependent shortcut is traced: 2 rows, a padded row, lengths > 1
    pixels = torch.randn(2, 3, image_size, image_size)
    _export(_VisionEncoder(model), [pixels], onnx_dir / "vision_encoder.onnx",
            {"pixel_values": {0: "batch_size", 2: "height", 3: "width"}},
            {"image_features": {0: "batch_size", 1: "num_image_tokens"}})
    ids = torch.tensor([[0, 5, 6, 2], [0, 7, 2, 1]])
    _export(_EmbedTokens(model), [ids], onnx_dir / "embed_tokens.onnx", {"input_ids": tokens},
            {"inputs_embeds": tokens})
    embeds, mask = torch.randn(2, 7, d), torch.tensor([[1] * 7, [1] * 5 + [0] * 2])
    _export(_Encoder(model), [embeds, mask], onnx_dir / "encoder_model.onnx",
            {"inputs_embeds": tokens, "attention_mask": tokens}, {"last_hidden_state": tokens})

    hidden = torch.randn(2, 7, d)
    head_dim = d // heads
    enc_len = {0: "batch_size", 1: "encoder_sequence_length"}
    common = {"encoder_attention_mask": enc_len, "encoder_hidden_states": enc_len,
              "inputs_embeds": {0: "batch_size", 1: "decoder_sequence_length"}}
    logits = {"logits": {0: "batch_size", 1: "decoder_sequence_length"}}
    present = {n: {0: "batch_size", 2: "decoder_sequence_length" if ".decoder." in n else "encoder_sequence_length"}
               for n in past_names(layers, "present")}
    no_past = [mask, hidden, torch.randn(2, 3, d)]
    _export(_Decoder(model), no_past, onnx_dir / "decoder_model.onnx", common, {**logits, **present})
    past = [torch.randn(2, heads, 3 if ".decoder." in n else 7, head_dim) for n in past_names(layers)]
    past_axes = {n: {0: "batch_size", 2: "past_decoder_sequence_length" if ".decoder." in n
                     else "encoder_sequence_length_out"} for n in past_names(layers)}
    present = {n: {0: "batch_size", 2: "past_decoder_sequence_length + decoder_sequence_length" if ".decoder." in n
                   else "encoder_sequence_length_out"} for n in past_names(layers, "present")}
    _export(_Decoder(model), [mask, hidden, torch.randn(2, 2, d), *past],
            onnx_dir / "decoder_with_past_model.onnx", {**common, **past_axes}, {**logits, **present})


def _write_variants(onnx_dir: Path, suffixes: list[str], quantize: str | None = None):
    """The merged decoder for each suffix ("" fp32, "_fp16", "_int8"), and the variants of the other
    graphs. Each decoder is converted before the merge: the converters then see plain graphs."""
    convert = {"_fp16": _fp16, "_int8": lambda src, dst: _int8(src, dst, quantize)}
    for suffix in suffixes:
        if suffix:
            for name in ("vision_encoder", "embed_tokens", "encoder_model", "decoder_model", "decoder_with_past_model"):
                convert[suffix](onnx_dir / f"{name}.onnx", onnx_dir / f"{name}{suffix}.onnx")
        merge_decoders(onnx_dir / f"decoder_model{suffix}.onnx", onnx_dir / f"decoder_with_past_model{suffix}.onnx",
                       onnx_dir / f"decoder_model_merged{suffix}.onnx")
    for suffix in suffixes:
        for name in ("decoder_model", "decoder_with_past_model"):
            (onnx_dir / f"{name}{suffix}.onnx").unlink()


# ---- merging the first-step and cached-step decoders -----------------------------------------------
def merge_decoders(no_past, with_past, out):
    """One graph from the decoder without and with past (files of :func:`_export_graphs`): inputs are
    the cached graph's plus ``use_cache_branch`` (bool, shape [1]); an ``If`` on it runs the cached graph
    or the first-step one (which ignores the past inputs). Weights the two share are stored once (by
    content); each branch keeps its own scalar and index constants."""
    import onnx
    from onnx import helper

    models = [onnx.load(str(no_past)), onnx.load(str(with_past))]
    graphs = [m.graph for m in models]
    outputs = [o.name for o in graphs[1].output]
    if [o.name for o in graphs[0].output] != outputs:
        raise ValueError(f"the decoders' outputs differ: {[o.name for o in graphs[0].output]} vs {outputs}")
    shared, taken, by_content, branches = [], set(), {}, []
    for tag, graph in zip(("no_past", "with_past"), graphs):
        rename, local = {}, []
        for init in graph.initializer:
            if len(init.dims) == 0 or (len(init.dims) == 1 and init.data_type in (6, 7)):
                local.append(init)  # small constants stay in the branch
                continue
            key = (init.data_type, tuple(init.dims), hashlib.sha1(init.raw_data or init.SerializeToString()).hexdigest())
            if key not in by_content:
                name = init.name if init.name not in taken else f"{tag}.{init.name}"
                by_content[key] = name
                taken.add(name)
                copy = onnx.TensorProto()
                copy.CopyFrom(init)
                copy.name = name
                shared.append(copy)
            rename[init.name] = by_content[key]
        nodes = list(graph.node)
        for node in nodes:
            node.input[:] = [rename.get(i, i) for i in node.input]
        # a branch output must be produced inside the branch: pass graph inputs through an Identity
        inputs = {i.name for i in graph.input}
        branch_outputs = []
        for out_info in graph.output:
            if out_info.name in inputs or out_info.name in rename:
                source = rename.get(out_info.name, out_info.name)
                out_info = helper.make_tensor_value_info(f"{tag}.{out_info.name}", out_info.type.tensor_type.elem_type, None)
                nodes.append(helper.make_node("Identity", [source], [out_info.name]))
            branch_outputs.append(out_info)
        branches.append(helper.make_graph(_topological(nodes), tag, [], branch_outputs, initializer=local))
    use_cache = helper.make_tensor_value_info("use_cache_branch", onnx.TensorProto.BOOL, [1])
    merged_outputs = [helper.make_tensor_value_info(o.name, o.type.tensor_type.elem_type,
                                                    [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim])
                      for o in graphs[1].output]
    if_node = helper.make_node("If", ["use_cache_branch"], outputs, name="use_cache_branch_if",
                               then_branch=branches[1], else_branch=branches[0])
    graph = helper.make_graph([if_node], "decoder_model_merged", [*graphs[1].input, use_cache], merged_outputs,
                              initializer=shared)
    model = helper.make_model(graph, opset_imports=models[1].opset_import, producer_name="florence")
    model.ir_version = models[1].ir_version
    onnx.checker.check_model(model, full_check=False)
    _save(model, out)


def _topological(nodes):
    """``nodes`` in an order where each comes after the producers of its inputs (float16 conversion
    appends its input casts at the end; ONNX's checker wants graphs sorted)."""
    produced_by = {out: k for k, node in enumerate(nodes) for out in node.output}
    order, state = [], {}

    def visit(k):
        stack = [(k, iter(nodes[k].input))]
        state[k] = 1
        while stack:
            current, inputs = stack[-1]
            for name in inputs:
                dep = produced_by.get(name)
                if dep is not None and dep not in state:
                    state[dep] = 1
                    stack.append((dep, iter(nodes[dep].input)))
                    break
            else:
                stack.pop()
                order.append(nodes[current])

    for k in range(len(nodes)):
        if k not in state:
            visit(k)
    return order


def _save(model, path):
    """Save ``model``; weights in an external file beside it when the graph is beyond protobuf's 2 GB."""
    import onnx

    path = Path(path)
    if model.ByteSize() < 2 ** 31 - 2 ** 26:
        onnx.save_model(model, str(path))
    else:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=path.name + "_data", size_threshold=1024)


# ---- variants ---------------------------------------------------------------------------------------
def _fp16(src: Path, dst: Path):
    """Float16 weights and compute, float32 inputs and outputs (any runtime feeds the same arrays)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True, disable_shape_infer=True)
    _save(model, dst)


QUANTIZE = {  # --quantize: how the _int8 graphs quantize the matrix products with weights (attention's stay float32)
    "int8": "dynamic: int8 weights (one scale per matrix), activations quantized per call",
    "int8-per-channel": "dynamic: 7-bit int8 weights (one scale per output channel), activations quantized per call",
    "int8-weights": "weight-only: int8 weights in blocks of 128 (MatMulNBits), activations stay float32",
}


def _int8(src: Path, dst: Path, scheme: str = "int8"):
    """onnxruntime's quantizers on the MatMul/Gemm weights of ``src`` (:data:`QUANTIZE`)."""
    import logging

    logging.disable(logging.WARNING)  # the quantizers' advice to run shape pre-processing, once per graph
    try:
        if scheme == "int8-weights":
            import onnx
            from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

            quantizer = MatMulNBitsQuantizer(onnx.load(str(src)), bits=8, block_size=128, is_symmetric=True,
                                             accuracy_level=1)  # 1: float32 compute
            quantizer.process()
            _save(quantizer.model.model, dst)
        else:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            # MatMulConstBOnly: products with a weight matrix only; attention's products of two activations
            # stay float32. Per channel, every row of weights spans the full int8 range, and on x86 CPUs
            # without VNNI (AVX2, AVX-512 before Cascade Lake) onnxruntime's u8 x s8 kernel adds pairs of
            # products in int16 (VPMADDUBSW), which then saturates: features 31% off on an AVX2 machine.
            # 7-bit weights (reduce_range) keep the pair sums in range on every CPU.
            per_channel = scheme == "int8-per-channel"
            quantize_dynamic(str(src), str(dst), op_types_to_quantize=["MatMul", "Gemm"],
                             weight_type=QuantType.QInt8, per_channel=per_channel, reduce_range=per_channel,
                             extra_options={"MatMulConstBOnly": True})
    finally:
        logging.disable(logging.NOTSET)


# ---- the folder ---------------------------------------------------------------------------------------
def _transformers_js_entries(folder: Path) -> dict:
    """transformers.js's Florence2Processor reads the task tables from ``preprocessor_config.json``:
    prompts with and without input and each task's post-processing type, as transformers' own
    processor has them, extended to florence's registered tasks."""
    from transformers import AutoProcessor

    from ..task import list_tasks

    native = AutoProcessor.from_pretrained(folder, backend="pil")
    without, with_input = dict(native.task_prompts_without_inputs), dict(native.task_prompts_with_input)
    kinds = dict(native.tasks_answer_post_processing_type)
    for task in list_tasks():
        if task.token in without or task.token in with_input:
            continue
        if task.input_kind is None:
            without[task.token] = task.template
        else:
            with_input[task.token] = task.template
        kinds.setdefault(task.token, "pure_text")
    return dict(task_prompts_without_inputs=without, task_prompts_with_input=with_input,
                tasks_answer_post_processing_type=kinds)


def export_onnx(model, out_dir, dtype: str = "fp32", quantize: str | None = None, image_size: int | None = None) -> Path:
    """Write ``model`` (a model folder in either layout, a hub id, or a ``(model, tokenizer)`` pair of
    florence's plain model and its tokenizer) as an ONNX model folder at ``out_dir``, atomically.

    ``dtype="fp16"`` adds the ``_fp16`` graphs; ``quantize`` (a :data:`QUANTIZE` scheme) the ``_int8`` graphs
    (also named ``_quantized``, transformers.js's name for its ``q8`` dtype). ``image_size``: the preprocessing's
    image side (default: the folder's own; the graphs accept any size)."""
    from .. import accel
    from ..atomic import folder_atomic
    from ..models import Florence2ForConditionalGeneration
    from ..models.files import resolve_folder
    from ..processing import Florence2Processor
    from .folder import _update_json, with_image_token, write_model_folder

    if dtype not in ("fp32", "fp16"):
        raise ValueError(f"dtype must be 'fp32' or 'fp16', got {dtype!r}")
    if quantize is not None and quantize not in QUANTIZE:
        raise ValueError(f"quantize must be None or one of {sorted(QUANTIZE)}, got {quantize!r}")
    if isinstance(model, tuple):
        model, tokenizer = model
    else:
        folder = resolve_folder(model)
        processor = Florence2Processor.from_pretrained(folder)
        tokenizer, image_size = processor.tokenizer, image_size or processor.image_processor.size
        model = Florence2ForConditionalGeneration.from_pretrained(folder)
    image_size = int(image_size or 768)
    model = model.float().eval()
    with folder_atomic(out_dir) as tmp, torch.no_grad():
        write_model_folder(model, tokenizer, tmp, image_size=image_size, layout="native")
        for weights in tmp.glob("model*.safetensors*"):
            weights.unlink()  # the graphs hold the weights
        _update_json(tmp / "config.json", is_encoder_decoder=True)  # transformers.js loads encoder_model.onnx only then
        _update_json(tmp / "preprocessor_config.json", **_transformers_js_entries(tmp))
        exported, _ = with_image_token(model, tokenizer)  # a copy, with the folder tokenizer's vocabulary
        accel.apply(exported, False)  # the plain model (florence.accel's fast paths do not trace)
        onnx_dir = tmp / "onnx"
        onnx_dir.mkdir()
        _export_graphs(exported, onnx_dir, image_size)
        _write_variants(onnx_dir, ["", *(["_fp16"] if dtype == "fp16" else []), *(["_int8"] if quantize else [])],
                        quantize)
        if quantize:
            for name in GRAPHS:
                shutil.copyfile(onnx_dir / f"{name}_int8.onnx", onnx_dir / f"{name}_quantized.onnx")
    return Path(out_dir)

