"""``florence export-onnx``: the main job's exported model as an ONNX folder in the onnx-community layout,
checked against florence's PyTorch model in onnxruntime (graphs, the ``backend="onnxruntime"`` pipeline
over every task, greedy and beam search) and in transformers.js under Node."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import florence
from florence.task import list_tasks

ort = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed (bash tools/install.sh --onnx)")
import onnx  # noqa: E402  (the same extra)

from florence.deploy.onnx import GRAPHS, past_names  # noqa: E402

HERE = Path(__file__).resolve().parent
IMAGES = [(80, 48), (50, 70), (64, 64)]  # (width, height)
TEXT, REGION = "a red square", [10.0, 5.0, 40.0, 30.0]


@pytest.fixture(scope="module")
def onnx_folder(exported, tmp_path_factory):
    from florence.cli import main

    out = tmp_path_factory.mktemp("onnx") / "model_onnx"
    assert main(["export-onnx", str(exported[0]), str(out), "--dtype", "fp16", "--quantize", "int8"]) == 0
    return out


@pytest.fixture(scope="module")
def torch_model(exported):
    from florence.models import Florence2ForConditionalGeneration

    return Florence2ForConditionalGeneration.from_pretrained(exported[0]).eval()


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    rng = np.random.default_rng(0)
    folder = tmp_path_factory.mktemp("images")
    paths = []
    for k, (w, h) in enumerate(IMAGES):
        paths.append(folder / f"image{k}.png")
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(paths[-1])
    return paths


def _dims(value_info):
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def test_the_folder_has_the_onnx_community_layout(onnx_folder, torch_model):
    """Files, graph input/output names and dimensions as transformers.js reads them: ``batch_size`` by
    that name (it sizes the empty first-step cache from it), heads and head size fixed, the rest dynamic."""
    top = {p.name for p in onnx_folder.iterdir() if p.is_file()}
    assert {"config.json", "generation_config.json", "preprocessor_config.json", "processor_config.json",
            "tokenizer.json", "tokenizer_config.json"} <= top
    assert not any(name.endswith((".safetensors", ".bin")) for name in top)
    suffixes = ("", "_fp16", "_int8", "_quantized")
    assert {p.name for p in (onnx_folder / "onnx").iterdir()} == {f"{g}{s}.onnx" for g in GRAPHS for s in suffixes}
    config = json.loads((onnx_folder / "config.json").read_text())
    assert config["model_type"] == "florence2" and config["is_encoder_decoder"] is True
    pre = json.loads((onnx_folder / "preprocessor_config.json").read_text())
    assert pre["task_prompts_without_inputs"]["<OD>"] == "Locate the objects with category name in the image."
    assert pre["tasks_answer_post_processing_type"]["<OCR_WITH_REGION>"] == "ocr"
    assert {t.token for t in list_tasks()} <= set(pre["task_prompts_without_inputs"]) | set(pre["task_prompts_with_input"])

    text = torch_model.config.text
    layers, heads, head_dim, d = text.decoder_layers, text.decoder_attention_heads, text.d_model // text.decoder_attention_heads, text.d_model
    graphs = {g: onnx.load(str(onnx_folder / "onnx" / f"{g}.onnx")).graph for g in GRAPHS}
    io = {g: ({i.name: _dims(i) for i in graph.input}, {o.name: _dims(o) for o in graph.output})
          for g, graph in graphs.items()}
    assert io["vision_encoder"] == ({"pixel_values": ["batch_size", 3, "height", "width"]},
                                    {"image_features": ["batch_size", "num_image_tokens", d]})
    assert io["embed_tokens"] == ({"input_ids": ["batch_size", "sequence_length"]},
                                  {"inputs_embeds": ["batch_size", "sequence_length", d]})
    assert io["encoder_model"] == ({"inputs_embeds": ["batch_size", "sequence_length", d],
                                    "attention_mask": ["batch_size", "sequence_length"]},
                                   {"last_hidden_state": ["batch_size", "sequence_length", d]})
    inputs, outputs = io["decoder_model_merged"]
    assert list(inputs) == ["encoder_attention_mask", "encoder_hidden_states", "inputs_embeds",
                            *past_names(layers), "use_cache_branch"]
    assert list(outputs) == ["logits", *past_names(layers, "present")]
    assert inputs["use_cache_branch"] == [1] and outputs["logits"][0] == "batch_size"
    for name in past_names(layers):
        dims = inputs[name]
        assert dims[0] == "batch_size" and dims[1] == heads and dims[3] == head_dim and isinstance(dims[2], str), name
    assert [n.op_type for n in graphs["decoder_model_merged"].node] == ["If"]


def _decoder_feeds(hidden, mask, embeds, past, cached):
    return {"encoder_hidden_states": hidden, "encoder_attention_mask": mask, "inputs_embeds": embeds,
            "use_cache_branch": np.array([cached]), **past}


def test_graphs_give_the_pytorch_models_features_and_logits(onnx_folder, torch_model):
    """fp32: image features at several image sizes (not only the folder's 64 px, not square) and
    batch sizes, the encoder output and the decoder's logits, first step over a whole prefix and then
    cached steps one token at a time, within 1e-4 of the PyTorch model on a right-padded batch."""
    sessions = {g: ort.InferenceSession(str(onnx_folder / "onnx" / f"{g}.onnx")) for g in GRAPHS}
    torch.manual_seed(0)
    for shape in [(1, 3, 64, 64), (3, 3, 96, 64), (2, 3, 100, 70)]:
        pixels = torch.randn(*shape)
        with torch.no_grad():
            ours = torch_model.encode_image(pixels).numpy()
        theirs = sessions["vision_encoder"].run(None, {"pixel_values": pixels.numpy()})[0]
        assert theirs.shape == ours.shape and np.abs(theirs - ours).max() < 1e-4, shape

    pixels = torch.randn(2, 3, 64, 64)
    ids = torch.tensor([[0, 10, 11, 12, 13, 2], [0, 20, 21, 2, 1, 1]])
    mask = (ids != 1).long()
    decoder_ids = torch.tensor([[2, 0, 30, 31, 32, 33], [2, 0, 40, 41, 42, 43]])
    with torch.no_grad():
        encoded, full_mask = torch_model.encode(pixels, ids, mask)
        logits = torch_model(pixels, ids, mask, decoder_input_ids=decoder_ids).logits.numpy()
    image = sessions["vision_encoder"].run(None, {"pixel_values": pixels.numpy()})[0]
    text = sessions["embed_tokens"].run(None, {"input_ids": ids.numpy()})[0]
    hidden = sessions["encoder_model"].run(None, {"inputs_embeds": np.concatenate([image, text], 1),
                                                  "attention_mask": full_mask.numpy()})[0]
    assert np.abs(hidden - encoded.last_hidden_state.numpy()).max() < 1e-4

    text_cfg = torch_model.config.text
    layers, heads = text_cfg.decoder_layers, text_cfg.decoder_attention_heads
    empty = {n: np.zeros((2, heads, 0, text_cfg.d_model // heads), np.float32) for n in past_names(layers)}
    embed = lambda x: sessions["embed_tokens"].run(None, {"input_ids": x.numpy()})[0]  # noqa: E731
    first = 3  # the first call decodes a 3-token prefix, then one token per call from the cache
    out = sessions["decoder_model_merged"].run(None, _decoder_feeds(hidden, full_mask.numpy(),
                                                                    embed(decoder_ids[:, :first]), empty, False))
    steps = [out[0]]
    for t in range(first, decoder_ids.shape[1]):
        past = dict(zip(past_names(layers), out[1:]))
        out = sessions["decoder_model_merged"].run(None, _decoder_feeds(hidden, full_mask.numpy(),
                                                                        embed(decoder_ids[:, t:t + 1]), past, True))
        assert out[1 + 2].shape[2] == hidden.shape[1]  # the encoder's keys come back as they went in
        steps.append(out[0])
    assert np.abs(np.concatenate(steps, 1) - logits).max() < 1e-4


@pytest.mark.parametrize("num_beams", [1, 3])
def test_the_onnxruntime_backend_gives_the_pytorch_pipelines_results_for_every_task(exported, onnx_folder, images,
                                                                                    num_beams):
    """One right-padded batch mixing every registered task (images of three sizes): generated texts
    (special tokens kept) equal, parsed results equal, per-item scores within 1e-4."""
    torch_pipe = florence.pipeline(str(exported[0]))
    onnx_pipe = florence.pipeline(str(onnx_folder), backend="onnxruntime")
    tasks = list_tasks()
    calls = [(images[k % len(images)], task, {None: None, "text": TEXT, "region": REGION}[task.input_kind])
             for k, task in enumerate(tasks)]
    paths, task_list, inputs = zip(*calls)
    options = dict(num_beams=num_beams, max_new_tokens=40, batch_size=len(calls))
    opened = [Image.open(p).convert("RGB") for p in paths]
    prompts = [task.prompt(text, image.size) for task, text, image in zip(task_list, inputs, opened)]
    ours_texts, ours_scores = torch_pipe.generate_texts(opened, prompts, num_beams=num_beams, max_new_tokens=40)
    theirs_texts, theirs_scores = onnx_pipe.generate_texts(opened, prompts, num_beams=num_beams, max_new_tokens=40)
    assert theirs_texts == ours_texts
    assert len({t for t in ours_texts}) > len(tasks) // 2  # varied outputs, not one text everywhere
    for a, b in zip(ours_scores, theirs_scores):
        assert np.allclose(a, b, atol=1e-4)

    ours = torch_pipe(list(paths), list(task_list), list(inputs), **options)
    theirs = onnx_pipe(list(paths), list(task_list), list(inputs), **options)
    assert [_without_scores(r) for r in theirs] == [_without_scores(r) for r in ours]
    for a, b in zip(ours, theirs):
        for (token, result), other in zip(a.items(), b.values()):
            if isinstance(result, dict) and "scores" in result:
                assert np.allclose(result["scores"], other["scores"], atol=1e-4), token


def test_the_onnxruntime_backend_takes_several_queries_of_one_image(exported, onnx_folder, images):
    """Several classes of one image (its embeddings computed once, then one row per class): the
    PyTorch pipeline's merged result."""
    task, queries = "<OPEN_VOCABULARY_DETECTION>", ["a red square", "circle", "a tree"]
    ours = florence.pipeline(str(exported[0]))(images[0], task, queries, max_new_tokens=40)
    theirs = florence.pipeline(str(onnx_folder), backend="onnxruntime")(images[0], task, queries, max_new_tokens=40)
    assert _without_scores(theirs) == _without_scores(ours)
    assert np.allclose(theirs[task].get("scores", []), ours[task].get("scores", []), atol=1e-4)


def test_the_onnxruntime_backend_keeps_to_the_task_grammars(exported, onnx_folder, images):
    """grammar=True through transformers' generate over the ONNX decoder: every task's output
    well-formed, and the texts the PyTorch model gives with the same grammars."""
    from florence.grammar import count_malformed

    torch_pipe = florence.pipeline(str(exported[0]))
    onnx_pipe = florence.pipeline(str(onnx_folder), backend="onnxruntime")
    tasks = list_tasks()
    opened = [Image.open(images[k % len(images)]).convert("RGB") for k in range(len(tasks))]
    prompts = [t.prompt({None: None, "text": TEXT, "region": REGION}[t.input_kind], im.size)
               for t, im in zip(tasks, opened)]
    gen = dict(num_beams=1, max_new_tokens=30, grammars=[t.grammar for t in tasks])
    ours, _ = torch_pipe.generate_texts(opened, prompts, **gen)
    theirs, _ = onnx_pipe.generate_texts(opened, prompts, **gen)
    assert theirs == ours
    tok, loc = onnx_pipe.processor.tokenizer, onnx_pipe.processor.location_token_ids
    for task, text in zip(tasks, theirs):
        ids = tok(text.replace("<pad>", ""), add_special_tokens=False)["input_ids"]
        assert count_malformed(ids, task.grammar, tok, loc)[1:] == (0, True), (task.token, text)


def _without_scores(result: dict) -> dict:
    return {token: ({k: v for k, v in r.items() if k != "scores"} if isinstance(r, dict) else r)
            for token, r in result.items()}


def test_fp16_and_int8_graphs_run_in_the_pipeline(onnx_folder, torch_model, images):
    """The half-precision and quantized variants: image features close to fp32 (fp16 within 1% of the
    features' scale, int8 within 10%), and the pipeline runs every task with them."""
    torch.manual_seed(1)
    pixels = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        reference = torch_model.encode_image(pixels).numpy()
    scale = np.abs(reference).max()
    for suffix, tolerance in (("_fp16", 0.01), ("_int8", 0.1)):
        session = ort.InferenceSession(str(onnx_folder / "onnx" / f"vision_encoder{suffix}.onnx"))
        features = session.run(None, {"pixel_values": pixels.numpy()})[0]
        assert features.dtype == np.float32 and np.abs(features - reference).max() < tolerance * scale, suffix
    for variant in ("fp16", "int8"):
        pipe = florence.pipeline(str(onnx_folder), backend="onnxruntime", dtype=variant)
        results = pipe([images[0]] * len(list_tasks()), [t.token for t in list_tasks()],
                       [{None: None, "text": TEXT, "region": REGION}[t.input_kind] for t in list_tasks()],
                       num_beams=1, max_new_tokens=20)
        assert [next(iter(r)) for r in results] == [t.token for t in list_tasks()]


@pytest.mark.parametrize("scheme", ["int8-per-channel", "int8-weights"])
def test_the_other_int8_schemes(exported, torch_model, images, tmp_path, scheme):
    """Per-channel dynamic and weight-only int8 (MatMulNBits): every product with a weight matrix is
    quantized and attention's products of activations are not; features within 10%; the pipeline runs."""
    from florence.deploy import export_onnx

    out = export_onnx(exported[0], tmp_path / "model", quantize=scheme)
    graph = onnx.load(str(out / "onnx" / "encoder_model_int8.onnx")).graph
    weights = {i.name for i in graph.initializer}
    ops = [n.op_type for n in graph.node]
    assert ops.count("MatMulNBits" if scheme == "int8-weights" else "MatMulInteger") >= 12  # 2 layers x 6 weights
    float_products = [n for n in graph.node if n.op_type == "MatMul"]
    assert float_products and not any(n.input[1] in weights for n in float_products)
    torch.manual_seed(1)
    pixels = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        reference = torch_model.encode_image(pixels).numpy()
    session = ort.InferenceSession(str(out / "onnx" / "vision_encoder_int8.onnx"))
    features = session.run(None, {"pixel_values": pixels.numpy()})[0]
    assert np.abs(features - reference).max() < 0.1 * np.abs(reference).max()
    pipe = florence.pipeline(str(out), backend="onnxruntime", dtype="int8")
    assert "<OD>" in pipe(images[1], "<OD>", num_beams=3, max_new_tokens=20)


def test_transformers_js_generates_our_token_ids(onnx_folder, torch_model):
    """transformers.js (Node) loads the folder by its layout (vision_encoder, embed_tokens, encoder_model,
    decoder_model_merged) and, from fixed pixel values and a right-padded batch of two prompts,
    generates greedily the token ids the PyTorch model generates (with its own n-gram blocking, as
    transformers' generate does it)."""
    script = HERE / "js" / "generate.mjs"
    if shutil.which("node") is None:
        pytest.skip("node is not installed: the transformers.js check needs Node 18+ and npm")
    if not (HERE / "js" / "node_modules" / "@huggingface" / "transformers").is_dir():
        pytest.skip("transformers.js is not installed: bash tools/install.sh --test (npm install --ignore-scripts "
                    "in tests/deploy/js)")
    torch.manual_seed(2)
    pixels = torch.randn(2, 3, 64, 64)
    ids = torch.tensor([[0, 10, 11, 12, 13, 2], [0, 20, 21, 2, 1, 1]])
    mask = (ids != 1).long()
    with torch.no_grad():
        ours = torch_model.generate(pixels, ids, mask, num_beams=1, max_new_tokens=16, no_repeat_ngram_size=3)
    work = onnx_folder.parent
    (work / "inputs.json").write_text(json.dumps(dict(
        pixel_values=dict(dims=list(pixels.shape), data=pixels.flatten().tolist()), input_ids=ids.tolist(),
        attention_mask=mask.tolist(), max_new_tokens=16, no_repeat_ngram_size=3)))
    proc = subprocess.run(["node", str(script), str(onnx_folder), str(work / "inputs.json"), str(work / "js.json")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    theirs = json.loads((work / "js.json").read_text())["ids"]
    # transformers.js pads finished rows with the pad id, as transformers does
    assert theirs == ours.tolist()
    assert len(set(ours[0].tolist())) > 3  # not a degenerate repetition


def test_cli_export_format_onnx_and_infer_with_the_onnxruntime_backend(exported, onnx_folder, images, tmp_path):
    """``florence export ... --format onnx`` gives the same graphs' results as ``export-onnx``; ``florence infer
    --backend onnxruntime`` writes the lines ``florence infer`` writes with the PyTorch model."""
    from florence.cli import main

    work = exported[0].parent
    assert main(["export", str(work / "config.py"), str(work / "iter_1.pth"), str(tmp_path / "via_export"),
                 "--format", "onnx"]) == 0
    assert {p.name for p in (tmp_path / "via_export" / "onnx").iterdir()} == {f"{g}.onnx" for g in GRAPHS}
    common = ["--task", "<OD>", "--num-beams", "3", "--max-new-tokens", "30", *map(str, images)]
    assert main(["infer", "--model", str(exported[0]), "--dtype", "fp32", "--out", str(tmp_path / "torch.jsonl"),
                 *common]) == 0
    for folder, name in ((onnx_folder, "onnx.jsonl"), (tmp_path / "via_export", "via_export.jsonl")):
        assert main(["infer", "--model", str(folder), "--backend", "onnxruntime", "--out", str(tmp_path / name),
                     *common]) == 0
    rows = {name: [json.loads(line) for line in (tmp_path / name).read_text().splitlines()]
            for name in ("torch.jsonl", "onnx.jsonl", "via_export.jsonl")}
    for name in ("onnx.jsonl", "via_export.jsonl"):
        assert len(rows[name]) == len(images)
        for a, b in zip(rows["torch.jsonl"], rows[name]):
            assert {k: v for k, v in a["result"].items() if k != "scores"} == \
                   {k: v for k, v in b["result"].items() if k != "scores"}
            assert np.allclose(a["result"].get("scores", []), b["result"].get("scores", []), atol=1e-4)


def test_a_folder_without_the_graphs_or_without_onnxruntime_is_refused_by_name(exported, onnx_folder, tmp_path):
    from florence.models.files import CheckpointError

    with pytest.raises(CheckpointError, match=r"missing onnx/vision_encoder.onnx"):
        florence.pipeline(str(exported[0]), backend="onnxruntime")
    partial = tmp_path / "partial"
    shutil.copytree(onnx_folder, partial, ignore=shutil.ignore_patterns("*_fp16.onnx"))
    with pytest.raises(CheckpointError, match=r"fp16 graphs: missing onnx/vision_encoder_fp16.onnx.*--dtype fp16"):
        florence.pipeline(str(partial), backend="onnxruntime", dtype="fp16")
    with pytest.raises(ValueError, match="backend must be"):
        florence.pipeline(str(onnx_folder), backend="tensorrt")
    code = ("import sys; sys.modules['onnxruntime'] = None\n"
            "import florence\n"
            f"florence.pipeline({str(onnx_folder)!r}, backend='onnxruntime')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "pip install 'florence-vision[onnx]'" in proc.stderr
