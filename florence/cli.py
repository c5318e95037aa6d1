"""The ``florence`` command.

    florence infer --model PATH_OR_HUB_ID --task "<OD>" [--text "..."] IMAGES... --out results.jsonl [--vis DIR]
    florence label --model PATH_OR_HUB_ID IMAGES... --tasks "<OD>" "<MORE_DETAILED_CAPTION>" --out DIR
    florence shards CONFIG --out DIR [--split train] [--samples-per-shard N]   # a config's datasets as tar shards
    florence export CONFIG CHECKPOINT OUT_DIR [--layout native|microsoft] [--image-size N] [--format onnx]
    florence export-onnx MODEL OUT_DIR [--dtype fp32|fp16] [--quantize int8]   # an ONNX model folder
    florence serve MODEL [--backend torch|onnxruntime] [--port 8000] [--max-batch 8] [--max-wait-ms 10]
    florence tasks                                  # list the registered tasks

``infer`` writes one JSON line per image as soon as its batch is done
(``{"image", "width", "height", "task", "result"}``, or ``{"image", "error"}`` for an image that
could not be read: the run goes on and exits with status 1 at the end).

``label`` is the data engine's labelling run (:func:`florence.label.label`): filtered labels as
resumable shards of florence JSON Lines plus ``manifest.json`` (counts per filter rule, bad images);
run it again after a kill and it continues where it stopped.

``export`` writes a training checkpoint as a model folder (:meth:`florence.engine.Florence2Model.export`):
in the native layout (default) transformers' ``AutoProcessor`` and ``AutoModelForImageTextToText`` load
it without florence; LoRA adapters are merged; images are resized to the side the model trained at.

``export-onnx`` writes a model folder (either layout, or a hub id) as ONNX graphs in the layout
onnxruntime and transformers.js load (:func:`florence.deploy.export_onnx`); ``infer --backend
onnxruntime --model ONNX_DIR`` runs it.

``serve`` runs the pipeline behind HTTP with dynamic batching (:mod:`florence.deploy.serve`, the
``serve`` extra): ``POST /v1/predict``, ``/v1/predict/batch``, a page at ``/``, OpenAPI at ``/docs``.

``shards`` writes each source dataset of a config's ``train_dataloader`` (or ``--split val`` / ``test``)
as tar shards (:func:`florence.data.write_shards`), one folder per source, and prints the dataloader
config that streams them (:class:`florence.data.MultiTaskStream`, the same weights).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["main"]

DTYPES = ("auto", "float32", "fp32", "bfloat16", "bf16", "float16", "fp16", "int8")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="florence", description="Florence-2 from the command line")
    sub = parser.add_subparsers(dest="command", required=True)

    infer = sub.add_parser("infer", help="run a task on images, write JSON Lines (and drawings)")
    infer.add_argument("images", nargs="+", help="image files and/or folders")
    infer.add_argument("--model", required=True, help="checkpoint folder (either layout) or hub id")
    infer.add_argument("--task", required=True, help='task token or name, e.g. "<OD>" or od')
    infer.add_argument("--text", help="task input: text, or a region as 'x1,y1,x2,y2' pixels")
    infer.add_argument("--out", required=True, help="JSON Lines file to write")
    infer.add_argument("--vis", help="folder for PNG drawings of the results")
    infer.add_argument("--batch-size", type=int, default=8)
    infer.add_argument("--device", default=None, help="e.g. cpu, cuda:0 (default: cuda when a GPU is there, else cpu)")
    infer.add_argument("--dtype", choices=DTYPES, default="auto",
                       help="auto (default): bf16 where the device computes it natively, else float32 "
                            "(float16 on a GPU without bf16)")
    infer.add_argument("--num-beams", type=int, default=None, help="default: the checkpoint's (3)")
    infer.add_argument("--max-new-tokens", type=int, default=None, help="default: the checkpoint's (1024)")
    infer.add_argument("--block-location-ngrams", action="store_true",
                       help="n-gram blocking over location tokens too (the published behaviour)")
    infer.add_argument("--plain", action="store_true",
                       help="run the plain model, without florence.accel's CPU fast paths (same results)")
    infer.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch",
                       help="onnxruntime: --model is an ONNX folder (florence export-onnx); --dtype fp32, fp16 "
                            "or int8 picks its graphs")

    lab = sub.add_parser("label", help="the data engine: annotate images, filter, write resumable label shards")
    lab.add_argument("images", nargs="+", help="image files and/or folders")
    lab.add_argument("--model", required=True, action="append",
                     help="checkpoint folder or hub id of an annotator (repeat for several)")
    lab.add_argument("--tasks", required=True, nargs="+", help='task tokens, e.g. "<OD>" "<MORE_DETAILED_CAPTION>"')
    lab.add_argument("--out", required=True, help="folder for the shards and manifest.json")
    lab.add_argument("--consensus", type=int, default=None, metavar="K",
                     help="merge the models' labels of an image: keep what at least K models agree on (fused boxes)")
    lab.add_argument("--consensus-iou", type=float, default=0.55, help="boxes this overlapping agree (default 0.55)")
    lab.add_argument("--min-score", type=float, default=0.3, help="drop regions scored below (0: off; default 0.3)")
    lab.add_argument("--nms-iou", type=float, default=0.7,
                     help="class-aware NMS: drop same-label regions overlapping more (1: off; default 0.7)")
    lab.add_argument("--min-size", type=float, default=2, help="drop regions narrower/lower than this many px (default 2)")
    lab.add_argument("--max-coverage", type=float, default=0.95,
                     help="drop regions covering this much of the image (1: off; default 0.95)")
    lab.add_argument("--max-objects", type=int, default=None, help="drop samples naming more objects (default off)")
    lab.add_argument("--min-complexity", type=int, default=None,
                     help="drop texts with fewer content words (default off)")
    lab.add_argument("--batch-size", type=int, default=8)
    lab.add_argument("--shard-size", type=int, default=256, help="images per shard (the unit of resuming)")
    lab.add_argument("--num-beams", type=int, default=None)
    lab.add_argument("--max-new-tokens", type=int, default=None)

    shards = sub.add_parser("shards", help="write a config's datasets as tar shards that training streams")
    shards.add_argument("config", help="a training config (its dataloader's MultiTaskDataset or dataset)")
    shards.add_argument("--out", required=True, help="folder for one shard folder per source dataset")
    shards.add_argument("--split", choices=("train", "val", "test"), default="train")
    shards.add_argument("--samples-per-shard", type=int, default=1000)
    shards.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE",
                        help="override config values, as tools/train.py does")

    export = sub.add_parser("export", help="a training checkpoint as a model folder transformers loads whole")
    export.add_argument("config", help="the training config")
    export.add_argument("checkpoint", help="a .pth written by tools/train.py")
    export.add_argument("out_dir")
    export.add_argument("--layout", choices=["native", "microsoft"], default="native",
                        help="native (default): transformers' own Florence-2 loads it; microsoft: the hub layout")
    export.add_argument("--image-size", type=int, default=None,
                        help="image side of the exported preprocessing (default: the training data's image_size)")
    export.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE",
                        help="override config values, as tools/train.py does")
    export.add_argument("--format", choices=("safetensors", "onnx"), default="safetensors",
                        help="onnx: the ONNX folder of export-onnx (fp32 graphs), in place of the weights")

    onnx = sub.add_parser("export-onnx", help="a model folder as ONNX graphs (onnxruntime, transformers.js)")
    onnx.add_argument("model", help="model folder (either layout) or hub id")
    onnx.add_argument("out_dir")
    onnx.add_argument("--dtype", choices=("fp32", "fp16"), default="fp32",
                      help="fp16: also the _fp16 graphs (float16 weights, float32 inputs and outputs)")
    onnx.add_argument("--quantize", choices=("int8", "int8-per-channel", "int8-weights"), default=None,
                      help="also the _int8 (= _quantized) graphs: int8 (dynamic, a scale per matrix), "
                           "int8-per-channel (dynamic, a scale per channel), int8-weights (weight-only, float32 "
                           "activations); README Deploy compares them")
    onnx.add_argument("--image-size", type=int, default=None,
                      help="image side of the preprocessing (default: the folder's; the graphs take any size)")

    srv = sub.add_parser("serve", help="an HTTP service with dynamic batching (the serve extra)")
    srv.add_argument("model", help="model folder (either layout; an ONNX folder with --backend onnxruntime) "
                                   "or hub id")
    srv.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch")
    srv.add_argument("--dtype", choices=DTYPES, default="auto", help="as for infer")
    srv.add_argument("--host", default="127.0.0.1", help="127.0.0.1 (default), 0.0.0.0 or ::")
    srv.add_argument("--port", type=int, default=8000)
    srv.add_argument("--workers", type=int, default=1, help="model workers (processes sharing the cores; default 1)")
    srv.add_argument("--max-batch", type=int, default=8, help="images per model batch (1: batching off; default 8)")
    srv.add_argument("--max-wait-ms", type=float, default=10,
                     help="how long a worker waits for more images to fill a batch (default 10)")
    srv.add_argument("--max-queue", type=int, default=64,
                     help="images queued or running; beyond, 503 with Retry-After (default 64)")
    srv.add_argument("--timeout", type=float, default=120,
                     help="seconds per request, queue included (504; default 120)")
    srv.add_argument("--max-request-mb", type=float, default=32, help="request body limit (413; default 32)")
    srv.add_argument("--max-pixels", type=int, default=40_000_000,
                     help="image pixel limit, checked before decoding (413; default 40M)")
    srv.add_argument("--max-batch-items", type=int, default=32, help="images in one /v1/predict/batch (default 32)")
    srv.add_argument("--max-num-beams", type=int, default=3, help="largest num_beams a request may ask (default 3)")
    srv.add_argument("--max-new-tokens", type=int, default=1024,
                     help="largest max_new_tokens a request may ask (default 1024)")
    srv.add_argument("--max-text-chars", type=int, default=1000, help="longest text input a request may send")
    srv.add_argument("--api-key", default=None,
                     help="require this key (Authorization: Bearer KEY or X-API-Key); default $FLORENCE_API_KEY "
                          "(better: the command line shows in ps)")
    srv.add_argument("--block-location-ngrams", action="store_true", help="as for infer")
    srv.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))

    sub.add_parser("tasks", help="list the registered tasks")
    return parser


def _config(path, cfg_options):
    """A config file with ``--cfg-options`` applied, as tools/train.py reads it (mmengine is not
    imported to build the parser)."""
    from mmengine.config import DictAction

    from .engine import load_config

    options = argparse.Namespace(values={})
    if cfg_options:
        DictAction(option_strings=[], dest="values")(None, options, cfg_options)
    return load_config(path, options.values)


def _infer(args) -> int:
    from tqdm import tqdm

    from . import hardware
    from .inference import pipeline
    from .task import box_or_text, get_task
    from .visualize import draw_result
    from .processing.image import image_files, load_image

    task = get_task(args.task)  # fail before loading the model
    sources = image_files(args.images)
    device = args.device or hardware.default_device()
    if args.backend == "onnxruntime":
        pipe = pipeline(args.model, dtype=args.dtype, backend="onnxruntime",
                        block_location_ngrams=args.block_location_ngrams)
    else:
        if args.dtype == "int8":
            raise SystemExit("--dtype int8 runs the int8 ONNX graphs: use it with --backend onnxruntime")
        dtype = hardware.resolve_dtype(args.dtype, device, log=lambda m: print(m, file=sys.stderr))
        pipe = pipeline(args.model, device=device, dtype=dtype, block_location_ngrams=args.block_location_ngrams,
                        accelerate=False if args.plain else "auto")
    gen = {k: v for k, v in (("num_beams", args.num_beams), ("max_new_tokens", args.max_new_tokens))
           if v is not None}
    vis = Path(args.vis) if args.vis else None
    if vis:
        vis.mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    failed = 0
    text_input = None if args.text is None else box_or_text(args.text)
    with open(out, "w", encoding="utf-8") as f, tqdm(total=len(sources), unit="img", desc=task.token) as bar:
        for start in range(0, len(sources), args.batch_size):
            chunk = sources[start:start + args.batch_size]
            records, loaded = [None] * len(chunk), []
            for k, src in enumerate(chunk):
                try:
                    loaded.append((k, load_image(src)))
                except (OSError, ValueError) as e:  # a bad file is reported, the run goes on
                    records[k] = {"image": str(src), "error": str(e)}
            results = pipe([im for _, im in loaded], task, text_input, batch_size=args.batch_size, **gen) \
                if loaded else []
            for (k, image), result in zip(loaded, results):
                records[k] = {"image": str(chunk[k]), "width": image.width, "height": image.height,
                              "task": task.token, "result": result[task.token]}
                if vis:
                    draw_result(image, result).save(vis / f"{start + k:05d}_{Path(chunk[k]).stem}.png")
            failed += sum("error" in r for r in records)
            f.writelines(json.dumps(r) + "\n" for r in records)
            f.flush()
            bar.update(len(chunk))
    print(f"{len(sources) - failed} of {len(sources)} images -> {out}" + (f", drawings in {vis}" if vis else ""))
    if failed:
        print(f"{failed} image(s) could not be read: see the 'error' lines in {out}", file=sys.stderr)
    return 1 if failed else 0


def _label(args) -> int:
    from .label import label
    from .task import get_task

    for t in args.tasks:
        get_task(t)  # fail before loading a model
    rules = [dict(type="ScoreThreshold", min_score=args.min_score) if args.min_score > 0 else None,
             dict(type="ClassAwareNMS", iou_threshold=args.nms_iou) if args.nms_iou < 1 else None,
             dict(type="MinBoxSize", min_size=args.min_size) if args.min_size > 0 else None,
             dict(type="WholeImageBoxes", max_coverage=args.max_coverage) if args.max_coverage < 1 else None,
             dict(type="TooManyObjects", max_objects=args.max_objects) if args.max_objects is not None else None,
             dict(type="TextComplexity", min_complexity=args.min_complexity) if args.min_complexity else None]
    gen = {k: v for k, v in (("num_beams", args.num_beams), ("max_new_tokens", args.max_new_tokens)) if v is not None}
    merge = None if args.consensus is None else dict(type="Consensus", min_votes=args.consensus,
                                                     iou_threshold=args.consensus_iou)
    m = label(list(args.model), list(args.images), args.tasks, args.out, filters=[r for r in rules if r], merge=merge,
              batch_size=args.batch_size, shard_size=args.shard_size, generation=gen)
    removed = ", ".join(f"{rule} -{c['items']} regions -{c['samples']} samples" for rule, c in m["filters"].items())
    print(f"{m['labels']} labels of {m['images']} images -> {args.out} ({m['shards_done']}/{m['shards']} shards)"
          + (f"; filters: {removed}" if removed else ""))
    if m["bad_images"]:
        print(f"{len(m['bad_images'])} image(s) could not be labelled: see bad_images in {args.out}/manifest.json",
              file=sys.stderr)
    return 0


def _shards(args) -> int:
    from .data import write_shards
    from .registry import DATASETS

    cfg = _config(args.config, args.cfg_options)
    dataset = cfg[f"{args.split}_dataloader"]["dataset"]
    sources = dataset["datasets"] if "datasets" in dataset else [dataset]
    out = Path(args.out)
    folders = []
    for k, source in enumerate(sources):
        built = DATASETS.build(source)
        folder = out / f"{k}-{type(built).__name__}"
        m = write_shards(built, folder, samples_per_shard=args.samples_per_shard, progress=True)
        print(f"{m['samples']} samples of {type(built).__name__} -> {folder} ({len(m['shards'])} shards)")
        folders.append(str(folder))
    weights = dataset.get("weights")
    print("stream them in training with:\n"
          f"train_dataloader.update(sampler=None, dataset=dict(type='MultiTaskStream', "
          f"image_size={dataset.get('image_size', 768)}, weights={weights!r},\n"
          f"    datasets=[{', '.join(f'dict(type={chr(39)}ShardedDataset{chr(39)}, path={f!r})' for f in folders)}]))")
    return 0


def _export(args) -> int:
    import tempfile

    from .deploy import export_onnx
    from .engine import export_checkpoint

    cfg = _config(args.config, args.cfg_options)
    if args.format == "onnx":
        with tempfile.TemporaryDirectory() as tmp:
            size = export_checkpoint(cfg, args.checkpoint, Path(tmp) / "model", image_size=args.image_size)
            export_onnx(Path(tmp) / "model", args.out_dir)
        print(f"wrote {args.out_dir} (ONNX, {size} px images)")
        return 0
    size = export_checkpoint(cfg, args.checkpoint, args.out_dir, layout=args.layout, image_size=args.image_size)
    print(f"wrote {args.out_dir} ({args.layout} layout, {size} px images)")
    return 0


def _export_onnx(args) -> int:
    from .deploy import export_onnx

    out = export_onnx(args.model, args.out_dir, dtype=args.dtype, quantize=args.quantize, image_size=args.image_size)
    graphs = sorted(p.name for p in (out / "onnx").glob("*.onnx"))
    print(f"wrote {out}: {', '.join(graphs)}")
    return 0


def _serve(args) -> int:
    try:
        from .deploy.serve import Limits, serve
    except ImportError as e:
        raise SystemExit(f"florence serve needs the serve extra ({e}): pip install 'florence-vision[serve]' "
                         "or bash tools/install.sh --serve") from None
    if args.backend == "torch" and args.dtype == "int8":
        raise SystemExit("--dtype int8 runs the int8 ONNX graphs: use it with --backend onnxruntime")
    limits = Limits(max_request_bytes=int(args.max_request_mb * (1 << 20)), max_pixels=args.max_pixels,
                    max_queue=args.max_queue, max_batch_items=args.max_batch_items, timeout=args.timeout,
                    max_num_beams=args.max_num_beams, max_new_tokens=args.max_new_tokens,
                    max_text_chars=args.max_text_chars)
    serve(args.model, host=args.host, port=args.port, log_level=args.log_level, backend=args.backend,
          dtype=args.dtype, workers=args.workers, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
          limits=limits, api_key=args.api_key, block_location_ngrams=args.block_location_ngrams)
    return 0


def _tasks(args) -> int:
    from .task import list_tasks, plugin_errors

    for t in list_tasks():
        needs = {None: "", "text": " (text input)", "region": " (region input)"}[t.input_kind]
        print(f"{t.token:40s} {t.name:34s} {type(t).__name__}{needs}")
    for message in plugin_errors():
        print(message, file=sys.stderr)
    return 0


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    return {"infer": _infer, "label": _label, "shards": _shards, "export": _export, "export-onnx": _export_onnx,
            "serve": _serve, "tasks": _tasks}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
