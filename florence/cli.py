"""The ``florence`` command: one verb per job of the loop, one option vocabulary.

    florence train CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp] [--cfg-options K=V ...]
    florence test CONFIG CHECKPOINT [--out metrics.json] [--work-dir DIR] [--cfg-options K=V ...]
    florence infer IMAGES... --model MODEL --task TASK [--text TEXT] --out results.jsonl [--vis DIR]
                   [--score-threshold S] [--nms IOU] [--tile SIZE [--tile-overlap F]]
    florence export CONFIG CHECKPOINT OUT_DIR [--layout native|microsoft] [--format safetensors|onnx]
    florence export --model MODEL OUT_DIR --format onnx [--dtype fp16] [--quantize int8]
    florence label IMAGES... --model MODEL --task TASK... --out DIR      # the data engine
    florence shards CONFIG --out DIR [--split train]                   # a config's datasets as tar shards
    florence serve --model MODEL [--backend torch|onnxruntime] [--port 8000]
    florence tasks                                                     # the registered tasks

Each verb is a call of the Python API (``florence train`` = :func:`florence.engine.train`, ``test`` =
:func:`florence.engine.evaluate`, ``infer`` = :meth:`florence.Pipeline.records`, ``export`` =
:func:`florence.engine.export_checkpoint` / :func:`florence.deploy.export_onnx`, ``label`` =
:func:`florence.label.label`, ``shards`` = :func:`florence.data.write_shards`, ``serve`` =
:func:`florence.deploy.serve.serve`); ``florence VERB --help`` says the rest, with an example.
This module imports none of them until a verb runs, so ``florence --help`` answers at once.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

__all__ = ["main", "parse", "job_options"]

DTYPES = ("auto", "float32", "fp32", "bfloat16", "bf16", "float16", "fp16", "int8")
EPILOG = """options mean the same in every verb: --model (a model folder in either layout, or a hub id),
--task (a task token or name: florence tasks), --text (the task's input: text, or a region 'x1,y1,x2,y2' in
pixels), --out, --batch-size, --dtype, --num-beams, --max-new-tokens, --score-threshold and --nms (which
regions of a location output to keep), --work-dir, --cfg-options (KEY=VALUE overrides of a config,
data_root=DIR included).

example, the main job with no download (the tiny preset on synthetic scenes: ~11-14 min on 2 CPU cores):
  florence train configs/florence2/florence2_tiny_synthetic.py --work-dir work_dirs/tiny
  florence test configs/florence2/florence2_tiny_synthetic.py work_dirs/tiny/iter_2200.pth
  florence export configs/florence2/florence2_tiny_synthetic.py work_dirs/tiny/iter_2200.pth tiny-model
  florence infer photos/ --model tiny-model --task "<OD>" --out results.jsonl --vis drawings/
"""


class _Help(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog):
        super().__init__(prog, max_help_position=32, width=110)


def _verb(sub, name: str, help: str, example: str, **kwargs) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help, description=help, epilog=f"example:\n  {example}", formatter_class=_Help,
                          **kwargs)


def _model(parser, positional: bool = False, **kwargs) -> None:
    """--model MODEL; where a verb took the model as its first argument (serve), that still works."""
    if positional:
        parser.add_argument("model_arg", nargs="?", metavar="MODEL", help=argparse.SUPPRESS)
    parser.add_argument("--model", **kwargs)


def _generation(parser) -> None:
    parser.add_argument("--num-beams", type=int, default=None, help="default: the checkpoint's (3)")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="default: the checkpoint's (1024)")


def _fraction(name: str, low_open: bool = False):
    """An argparse type: :func:`florence.regions.check_threshold`'s number (imported when the option
    is given, so ``--help`` stays light)."""
    def parse_fraction(text: str) -> float:
        from .regions import check_threshold

        try:
            return check_threshold(text, name, low_open)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    return parse_fraction


def _selection(parser) -> None:
    parser.add_argument("--score-threshold", type=_fraction("--score-threshold"), default=None, metavar="S",
                        help="drop regions of location outputs scored below S (default: keep all)")
    parser.add_argument("--nms", type=_fraction("--nms", low_open=True), default=None, metavar="IOU",
                        help="class-aware NMS of location outputs: drop same-label regions overlapping more than "
                             "IOU (default: off)")


def _cfg_options(parser) -> None:
    parser.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE",
                        help="override config values, e.g. train_cfg.max_iters=100 data_root=/data/mine")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="florence", description="Florence-2 from the command line: train, test, "
                                     "infer, export, label and serve.", epilog=EPILOG, formatter_class=_Help)
    sub = parser.add_subparsers(dest="command", required=True, metavar="VERB")

    train = _verb(sub, "train", "train (and evaluate) a model from a config on mmengine",
                  "florence train configs/florence2/florence2_tiny_synthetic.py --work-dir work_dirs/tiny --amp\n"
                  "  torchrun --nproc_per_node 2 -m florence.cli train CONFIG --launcher pytorch   # data-parallel")
    train.add_argument("config", help="a training config (configs/)")
    train.add_argument("--work-dir", help="where logs and checkpoints go (default: work_dirs/<config name>)")
    train.add_argument("--resume", nargs="?", const="auto", default=None, metavar="CKPT",
                       help="continue from CKPT, or (no value) from the work dir's latest checkpoint")
    train.add_argument("--amp", action="store_true",
                       help="bf16 mixed precision (autocast) where the device computes bf16 natively")
    train.add_argument("--launcher", choices=["none", "pytorch"], default="none",
                       help="'pytorch' under torchrun / tools/dist_train.sh (DDP; gloo on CPU)")
    _cfg_options(train)

    test = _verb(sub, "test", "evaluate a checkpoint on a config's test set: the (task, metric, value) table",
                 "florence test configs/florence2/florence2_tiny_synthetic.py work_dirs/tiny/iter_2200.pth "
                 "--out metrics.json")
    test.add_argument("config", help="the config the checkpoint was trained with (its test_dataloader, "
                                     "test_evaluator)")
    test.add_argument("checkpoint", help="a .pth written by florence train")
    test.add_argument("--out", help="write the metric table here as JSON")
    test.add_argument("--work-dir", help="where the logs go (default: work_dirs/<config name>)")
    _engine(test, "local: this process; ray: the generation on Ray Data, model replicas as actors (the ray extra), "
                  "the same table")
    _cfg_options(test)

    infer = _verb(sub, "infer", "run a task on images, write JSON Lines (and drawings)",
                  'florence infer photos/ --model microsoft/Florence-2-base --task "<OD>" --out od.jsonl --vis drawn/')
    infer.add_argument("images", nargs="+", help="image files, folders and/or listings (.txt: one path a line)")
    _model(infer, required=True, help="model folder (either layout; an ONNX folder with --backend onnxruntime) "
                                      "or hub id")
    infer.add_argument("--task", required=True, help='task token or name, e.g. "<OD>" or od')
    infer.add_argument("--text", action="append",
                       help="task input: text, or a region as 'x1,y1,x2,y2' pixels; repeat it for several classes "
                            "or phrases of each image (open-vocabulary detection, grounding): one merged result")
    infer.add_argument("--out", required=True, help="JSON Lines file to write: one line per image")
    infer.add_argument("--vis", help="folder for PNG drawings of the results")
    infer.add_argument("--batch-size", type=int, default=8)
    infer.add_argument("--device", default=None, help="e.g. cpu, cuda:0 (default: cuda when a GPU is there, else cpu)")
    infer.add_argument("--dtype", choices=DTYPES, default="auto",
                       help="auto (default): bf16 where the device computes it natively, else float32 "
                            "(float16 on a GPU without bf16)")
    _generation(infer)
    _selection(infer)
    infer.add_argument("--classes", metavar="A,B,...",
                       help="labels the output may use, comma-separated (detection, grounding, dense captions, OCR "
                            "regions): decoding is constrained to them")
    infer.add_argument("--grammar", action=argparse.BooleanOptionalAction, default=True,
                       help="keep decoding to the task's grammar (default): whole boxes with x2 >= x1, polygons of "
                            "3+ points, no location tokens in text; --no-grammar: the published decoding")
    infer.add_argument("--tile", type=int, default=None, metavar="SIZE",
                       help="read large images in SIZE x SIZE pixel tiles plus the whole image, regions merged "
                            "(location tasks and <OCR>; default: the whole image only)")
    infer.add_argument("--tile-overlap", type=float, default=None, metavar="F",
                       help="how much neighbouring tiles overlap, as a fraction of SIZE (default 0.2)")
    infer.add_argument("--block-location-ngrams", action="store_true",
                       help="n-gram blocking over location tokens too (the published behaviour)")
    infer.add_argument("--no-accelerate", "--plain", dest="plain", action="store_true",
                       help="the plain model, without florence.accel's CPU fast paths (same results; Python: "
                            "accelerate=False)")
    infer.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch",
                       help="onnxruntime: --model is an ONNX folder (florence export --format onnx); --dtype fp32, "
                            "fp16 or int8 picks its graphs")

    export = _verb(sub, "export", "a checkpoint as a model folder transformers loads whole, or as ONNX graphs",
                   "florence export CONFIG work_dirs/tiny/iter_2200.pth tiny-model          # safetensors folder\n"
                   "  florence export --model tiny-model tiny-onnx --format onnx --dtype fp16 --quantize int8")
    export.add_argument("paths", nargs="+", metavar="PATH",
                        help="CONFIG CHECKPOINT OUT_DIR (a checkpoint of florence train), or OUT_DIR with --model")
    _model(export, help="a model folder (either layout) or hub id to export as ONNX (with --format onnx)")
    export.add_argument("--format", choices=("safetensors", "onnx"), default=None,
                        help="safetensors (default for a checkpoint): a model folder; onnx (default with --model): "
                             "the ONNX folder onnxruntime and transformers.js load")
    export.add_argument("--layout", choices=["native", "microsoft"], default="native",
                        help="native (default): transformers' own Florence-2 loads it; microsoft: the hub layout")
    export.add_argument("--image-size", type=int, default=None,
                        help="image side of the exported preprocessing (default: the training data's, or the "
                             "folder's)")
    export.add_argument("--dtype", choices=("fp32", "fp16"), default="fp32",
                        help="onnx: fp16 also writes the _fp16 graphs (float16 weights, float32 inputs and outputs)")
    export.add_argument("--quantize", choices=("int8", "int8-per-channel", "int8-weights"), default=None,
                        help="onnx: also the _int8 (= _quantized) graphs: int8 (dynamic, a scale per matrix), "
                             "int8-per-channel, int8-weights (weight-only); README Deploy compares them")
    _cfg_options(export)

    onnx = sub.add_parser("export-onnx", help="the same as: export --model MODEL OUT_DIR --format onnx",
                          formatter_class=_Help)
    onnx.add_argument("model", help="model folder (either layout) or hub id")
    onnx.add_argument("out_dir")
    onnx.add_argument("--dtype", choices=("fp32", "fp16"), default="fp32")
    onnx.add_argument("--quantize", choices=("int8", "int8-per-channel", "int8-weights"), default=None)
    onnx.add_argument("--image-size", type=int, default=None)

    lab = _verb(sub, "label", "the data engine: annotate images, filter, write resumable label shards",
                'florence label photos/ --model microsoft/Florence-2-large --task "<OD>" "<MORE_DETAILED_CAPTION>" '
                "--out labels/")
    lab.add_argument("images", nargs="+", help="image files, folders and/or listings (.txt: one path a line), or tar "
                     "shard folders (florence shards: one label shard per tar, read where it is labelled)")
    lab.add_argument("--model", required=True, action="append",
                     help="checkpoint folder or hub id of an annotator (repeat for several)")
    lab.add_argument("--task", "--tasks", dest="tasks", required=True, nargs="+", action="extend",
                     help='task tokens or names, e.g. "<OD>" "<MORE_DETAILED_CAPTION>"')
    lab.add_argument("--out", required=True, help="folder for the shards and manifest.json")
    lab.add_argument("--consensus", type=int, default=None, metavar="K",
                     help="merge the models' labels of an image: keep what at least K models agree on (fused boxes)")
    lab.add_argument("--consensus-iou", type=float, default=0.55, help="boxes this overlapping agree (default 0.55)")
    lab.add_argument("--view", action="append", metavar="V",
                     help="read each image through this view too: identity, hflip, vflip, scale:0.75, "
                          "hflip+scale:0.75; repeat it: each model through each view is one annotator (test-time "
                          "augmentation, with --consensus K)")
    lab.add_argument("--score-threshold", "--min-score", dest="min_score", type=float, default=0.3,
                     help="drop regions scored below (0: off; default 0.3)")
    lab.add_argument("--nms", "--nms-iou", dest="nms_iou", type=float, default=0.7,
                     help="class-aware NMS: drop same-label regions overlapping more (1: off; default 0.7)")
    lab.add_argument("--min-size", type=float, default=2, help="drop regions narrower/lower than this many px (default 2)")
    lab.add_argument("--max-coverage", type=float, default=0.95,
                     help="drop regions covering this much of the image (1: off; default 0.95)")
    lab.add_argument("--max-objects", type=int, default=None, help="drop samples naming more objects (default off)")
    lab.add_argument("--min-complexity", type=int, default=None,
                     help="drop texts with fewer content words (default off)")
    lab.add_argument("--batch-size", type=int, default=8)
    _engine(lab, "local: this process (or its torchrun share); ray: Ray Data over a cluster, model replicas as "
                 "actors (the ray extra). Either continues a killed run when started again")
    lab.add_argument("--shard-size", type=int, default=256, help="images per shard (the unit of resuming)")
    _generation(lab)

    shards = _verb(sub, "shards", "write a config's datasets as tar shards that training streams",
                   "florence shards configs/florence2/florence2_tiny_synthetic.py --out shards/")
    shards.add_argument("config", help="a training config (its dataloader's MultiTaskDataset or dataset)")
    shards.add_argument("--out", required=True, help="folder for one shard folder per source dataset")
    shards.add_argument("--split", choices=("train", "val", "test"), default="train")
    shards.add_argument("--samples-per-shard", type=int, default=1000)
    _cfg_options(shards)

    srv = _verb(sub, "serve", "an HTTP service with dynamic batching (the serve extra)",
                "florence serve --model tiny-model --port 8000 --max-batch 8   # then open http://127.0.0.1:8000/")
    _model(srv, positional=True, help="model folder (either layout; an ONNX folder with --backend onnxruntime) "
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

    _verb(sub, "tasks", "list the registered tasks (built-in and plugins)", "florence tasks")
    return parser


def parse(argv=None) -> argparse.Namespace:
    """The command line ``argv`` (default: ``sys.argv[1:]``) as a namespace of the verb's options,
    its ``--cfg-options`` as a dict and ``--model`` given either way; errors exit as argparse does."""
    parser = _parser()
    args = parser.parse_args(argv)
    if hasattr(args, "model_arg"):  # serve MODEL or serve --model MODEL
        if args.model_arg and args.model:
            parser.error(f"{args.command}: the model given twice ({args.model_arg!r} and --model {args.model!r})")
        args.model = args.model or args.model_arg
        if not args.model:
            parser.error(f"{args.command}: --model MODEL is required")
        del args.model_arg
    if args.command == "export":
        if args.model is not None and len(args.paths) != 1:
            parser.error("export --model MODEL takes one path, the output folder: export --model MODEL OUT_DIR")
        if args.model is None and len(args.paths) != 3:
            parser.error("export takes CONFIG CHECKPOINT OUT_DIR (a checkpoint of florence train), or --model MODEL "
                         f"OUT_DIR (a model folder, as ONNX); got {len(args.paths)} path(s)")
        if args.model is not None and args.format == "safetensors":
            parser.error("export --model MODEL: a model folder already is safetensors; --format onnx exports it "
                         "as ONNX")
    if getattr(args, "cfg_options", None) is not None:
        args.cfg_options = _options_dict(args.cfg_options)
    return args


def job_options(verb: str, argv=None) -> dict:
    """The keyword arguments of the job behind ``verb`` (``train``, ``test``) from its command line:
    ``tools/train.py`` runs ``florence.engine.train(**job_options("train"))``."""
    args = parse([verb, *(sys.argv[1:] if argv is None else argv)])
    return {k: v for k, v in vars(args).items() if k != "command"}


def _options_dict(items: list[str]) -> dict:
    """``KEY=VALUE`` strings as mmengine's ``--cfg-options`` reads them (lists, tuples, numbers);
    mmengine is imported only when there are options."""
    if not items:
        return {}
    from mmengine.config import DictAction

    options = argparse.Namespace(values={})
    DictAction(option_strings=[], dest="values")(None, options, items)
    return options.values


def _train(args) -> int:
    from .engine import keep_freed_memory, train

    if args.entry and os.environ.get("FLORENCE_KEEP_FREED_MEMORY", "1") != "0":
        keep_freed_memory()  # training steps reuse their memory (README Performance); the process's own setting
    train(args.config, work_dir=args.work_dir, resume=args.resume, amp=args.amp, launcher=args.launcher,
          cfg_options=args.cfg_options)
    return 0


def _engine(parser, help: str) -> None:
    """The options of a job that runs here or on Ray (``--engine ray``)."""
    parser.add_argument("--engine", choices=("local", "ray"), default="local", help=help)
    parser.add_argument("--address", default=None,
                        help="with --engine ray: the cluster (auto, ray://HOST:10001; default: a local Ray)")
    parser.add_argument("--replicas", type=int, default=1, help="with --engine ray: model replicas (default 1)")
    parser.add_argument("--cpus-per-replica", type=float, default=1, help="with --engine ray (default 1)")
    parser.add_argument("--gpus-per-replica", type=float, default=0, help="with --engine ray (default 0)")


def _engine_options(args) -> dict:
    return dict(engine=args.engine, address=args.address, replicas=args.replicas,
                cpus_per_replica=args.cpus_per_replica, gpus_per_replica=args.gpus_per_replica)


def _test(args) -> int:
    from .engine import evaluate
    from .evaluation.task_metric import format_table

    rows = evaluate(args.config, args.checkpoint, out=args.out, work_dir=args.work_dir, cfg_options=args.cfg_options,
                    **_engine_options(args))
    if rows:
        print(format_table(rows))
    if args.out:
        print(f"metrics -> {args.out}")
    return 0


def _infer(args) -> int:
    from tqdm import tqdm

    from . import hardware
    from .inference import pipeline
    from .task import box_or_text, get_task
    from .visualize import draw_result
    from .processing.image import image_files, load_image

    task = get_task(args.task)  # fail before loading the model
    selection = {"score_threshold": args.score_threshold, "nms": args.nms}
    tile = None
    if args.tile is None and args.tile_overlap is not None:
        raise SystemExit("florence infer: --tile-overlap needs --tile SIZE")
    if args.tile is not None:
        from .tiling import check_tiling, tiled_task

        try:
            overlap = 0.2 if args.tile_overlap is None else args.tile_overlap
            tile, _ = check_tiling(dict(size=args.tile, overlap=overlap)), tiled_task(task)
        except ValueError as e:
            raise SystemExit(f"florence infer: --tile/--tile-overlap: {e}") from None
    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    sources = image_files(args.images)
    if args.backend == "onnxruntime":
        pipe = pipeline(args.model, dtype=args.dtype, backend="onnxruntime",
                        block_location_ngrams=args.block_location_ngrams)
    else:
        if args.dtype == "int8":
            raise SystemExit("--dtype int8 runs the int8 ONNX graphs: use it with --backend onnxruntime")
        device = args.device or hardware.default_device()
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
    texts = args.text or []
    text_input = None if not texts else box_or_text(texts[0]) if len(texts) == 1 else list(texts)
    records = pipe.records(sources, task, text_input, batch_size=args.batch_size, classes=classes,
                           grammar=args.grammar, tile=tile, **selection, **gen)
    with open(out, "w", encoding="utf-8") as f, tqdm(total=len(sources), unit="img", desc=task.token) as bar:
        for k, record in enumerate(records):
            f.write(json.dumps(record) + "\n")
            failed += "error" in record
            if vis and "error" not in record:
                name = f"{k:05d}_{Path(record['image']).stem}.png"
                draw_result(load_image(sources[k]), {task.token: record["result"]}).save(vis / name)
            if (k + 1) % args.batch_size == 0 or k + 1 == len(sources):
                f.flush()  # a batch is written as soon as it is done
            bar.update(1)
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
    annotators = list(args.model)
    if args.view:
        from .label.views import View

        try:
            views = [str(View.parse(v)) for v in args.view]
        except ValueError as e:
            raise SystemExit(f"florence label: --view: {e}") from None
        annotators = [dict(model=m, view=v) for m in annotators for v in views]
    m = label(annotators, list(args.images), args.tasks, args.out, filters=[r for r in rules if r], merge=merge,
              batch_size=args.batch_size, shard_size=args.shard_size, generation=gen, **_engine_options(args))
    removed = ", ".join(f"{rule} -{c['items']} regions -{c['samples']} samples" for rule, c in m["filters"].items())
    print(f"{m['labels']} labels of {m['images']} images -> {args.out} ({m['shards_done']}/{m['shards']} shards)"
          + (f"; filters: {removed}" if removed else ""))
    if m["bad_images"]:
        print(f"{len(m['bad_images'])} image(s) could not be labelled: see bad_images in {args.out}/manifest.json",
              file=sys.stderr)
    return 0


def _shards(args) -> int:
    from .data import write_shards
    from .engine import load_config
    from .registry import DATASETS

    cfg = load_config(args.config, args.cfg_options)
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

    onnx = dict(dtype=args.dtype, quantize=args.quantize)
    if args.model is not None:  # a model folder (or hub id) as ONNX
        out = export_onnx(args.model, args.paths[0], image_size=args.image_size, **onnx)
        print(f"wrote {out}: {', '.join(sorted(p.name for p in (out / 'onnx').glob('*.onnx')))}")
        return 0
    from .engine import export_checkpoint

    config, checkpoint, out_dir = args.paths
    if args.format == "onnx":
        with tempfile.TemporaryDirectory() as tmp:
            size = export_checkpoint(config, checkpoint, Path(tmp) / "model", image_size=args.image_size,
                                     cfg_options=args.cfg_options)
            export_onnx(Path(tmp) / "model", out_dir, **onnx)
        print(f"wrote {out_dir} (ONNX, {size} px images)")
        return 0
    size = export_checkpoint(config, checkpoint, out_dir, layout=args.layout, image_size=args.image_size,
                             cfg_options=args.cfg_options)
    print(f"wrote {out_dir} ({args.layout} layout, {size} px images)")
    return 0


def _export_onnx(args) -> int:
    args.paths, args.format, args.cfg_options = [args.out_dir], "onnx", {}
    return _export(args)


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


VERBS = {"train": _train, "test": _test, "infer": _infer, "export": _export, "export-onnx": _export_onnx,
         "label": _label, "shards": _shards, "serve": _serve, "tasks": _tasks}


def main(argv=None) -> int:
    """Run the verb of ``argv`` (default: the process's command line); returns the exit status."""
    args = parse(argv)
    args.entry = argv is None  # the process's own command (console script, python -m florence.cli)
    return VERBS[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
