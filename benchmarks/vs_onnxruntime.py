"""onnxruntime (fp32 and int8 ONNX graphs from ``florence export-onnx``) beside florence (PyTorch) and
transformers' native Florence-2, side by side in one process, same weights, same inputs.

    python benchmarks/vs_onnxruntime.py speed                     # B1-B3 of vs_transformers.py, base, fp32
    python benchmarks/vs_onnxruntime.py speed --presets tiny base --reps 5
    python benchmarks/vs_onnxruntime.py heldout CONFIG CHECKPOINT  # what int8 costs on a config's test set

``speed``: one random-weight model per preset (as ``vs_transformers.py`` builds it) is loaded by
transformers, by florence (``florence.accel``, as the pipeline runs on CPU) and exported with
``florence.deploy.export_onnx`` (fp32 + int8) for florence's ``onnxruntime`` backend. Sections as in
``vs_transformers.py``: B1 image encoding at 768 px (batch 1 and 8), B2 ``<OD>`` end to end (64
forced new tokens, greedy and 3 beams), B3 8 images with mixed tasks through the pipeline (32 forced
tokens, 3 beams; transformers image by image as its model card shows). Medians of ``--reps`` runs
after a warm-up, the runners alternating. Outputs are compared to florence's: B1 feature difference,
B2 token ids, B3 texts.

``heldout``: the checkpoint exported to ONNX (fp32 + int8), then the config's test set through
florence's PyTorch model (as ``tools/test.py`` runs it), the fp32 graphs and the int8 graphs, each
scored by the config's ``TaskMetric``: one table, a column per runner, int8's change per metric.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import vs_transformers as vt  # noqa: E402  (the models, inputs and workloads of the transformers benchmark)

import florence  # noqa: E402
from florence import hardware  # noqa: E402


# ---------------------------------------------------------------------------------------------
# speed
# ---------------------------------------------------------------------------------------------
class OnnxWorkloads(vt.Workloads):
    """vs_transformers' florence workloads over the onnxruntime model (same processor, same inputs)."""

    def __init__(self, model, tok):
        super().__init__("ours", model, tok, "fp32")

    def _encode(self, n):
        return self.model.encode_image(self.pixels[:n])


def timed(fns: dict, reps: int) -> tuple[dict, dict]:
    """Median seconds and the warm-up run's result per runner, runners alternating in rotating order."""
    outs = {name: fn() for name, fn in fns.items()}
    times = {name: [] for name in fns}
    names = list(fns)
    for i in range(reps):
        for name in names[i % len(names):] + names[:i % len(names)]:
            t0 = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - t0)
    return {n: statistics.median(t) for n, t in times.items()}, outs


def speed(args):
    from florence.deploy import export_onnx
    from florence.deploy.runtime import OnnxFlorence2

    torch.set_num_threads(args.threads)
    import transformers

    transformers.logging.set_verbosity_error()
    print(f"onnxruntime vs florence vs transformers {transformers.__version__} | torch {torch.__version__} | "
          f"{args.threads} threads | reps {args.reps} | {hardware.describe()}", flush=True)
    tok, rows = vt.tokenizer(), []
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets:
            folder, onnx_dir = os.path.join(tmp, preset), os.path.join(tmp, f"{preset}_onnx")
            vt.save_random_model(preset, folder)
            t0 = time.perf_counter()
            model = florence.Florence2ForConditionalGeneration.from_pretrained(folder)
            for scheme in args.quantize:
                export_onnx((model, tok), f"{onnx_dir}_{scheme}", quantize=scheme, image_size=768)
            print(f"[{preset}] exported fp32 + {' + '.join(args.quantize)} graphs in {time.perf_counter() - t0:.0f} s",
                  flush=True)
            del model
            runners = {"transformers": vt.Workloads("ref", vt.load("ref", folder, "fp32"), tok, "fp32"),
                       "florence": vt.Workloads("ours", vt.load("ours", folder, "fp32"), tok, "fp32"),
                       "ORT fp32": OnnxWorkloads(OnnxFlorence2(f"{onnx_dir}_{args.quantize[0]}",
                                                               threads=args.threads), tok)}
            for scheme in args.quantize:
                runners[f"ORT {scheme}"] = OnnxWorkloads(OnnxFlorence2(f"{onnx_dir}_{scheme}", "int8",
                                                                       threads=args.threads), tok)
            cases = [(f"b1-{n}", lambda w, n=n: w.b1(n)) for n in args.b1_batches]
            cases += [("b2-greedy", lambda w: w.b2(1)), ("b2-beams", lambda w: w.b2(3)), ("b3", lambda w: w.b3())]
            for case, make in cases:
                if case.split("-")[0] not in args.sections:
                    continue
                times, outs = timed({name: make(w) for name, w in runners.items()}, args.reps)
                agree = {name: _agreement(case, outs["florence"], outs[name]) for name in runners}
                rows.append(dict(case=f"{preset}/{case}", times=times, agree=agree))
                print(f"  {preset}/{case:10s} " + "  ".join(f"{n} {t:6.2f} s ({agree[n]})" for n, t in times.items()),
                      flush=True)
            del runners
    names = list(rows[0]["times"])
    print(f"\n{args.threads} threads, torch {torch.__version__}, transformers {transformers.__version__}, "
          f"onnxruntime {_ort_version()}; {hardware.describe()}\n")
    print("| case | " + " | ".join(f"{n} s" for n in names) + " | " + " / ".join(names[1:]) + " vs transformers | "
          + " | ".join(f"{n} vs florence" for n in names[2:]) + " |")
    print("|---|" + "---|" * (2 * len(names) - 1))
    for r in rows:
        t = r["times"]
        ratios = " / ".join(f"{t[n] / t['transformers']:.2f}x" for n in names[1:])
        print(f"| {r['case']} | " + " | ".join(f"{t[n]:.2f}" for n in names) + f" | {ratios} | "
              + " | ".join(r["agree"][n] for n in names[2:]) + " |")


def _agreement(case: str, ours, theirs) -> str:
    if case.startswith("b1"):
        return f"max rel. diff {((ours - theirs).abs().max() / ours.abs().max()).item():.1e}"
    if case.startswith("b2"):
        a, b = ours[0], theirs[0]
        return "ids equal" if a == b else f"{sum(x == y for x, y in zip(a, b))}/{len(a)} ids equal"
    return f"{sum(x == y for x, y in zip(ours, theirs))}/{len(ours)} texts equal"


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


# ---------------------------------------------------------------------------------------------
# held-out metrics
# ---------------------------------------------------------------------------------------------
def evaluate(model, inner, loader) -> list[dict]:
    """The test set through ``inner`` (a Florence2ForConditionalGeneration or an OnnxFlorence2) by
    ``Florence2Model.predict``, as ``tools/test.py`` runs it, scored by TaskMetric: its table rows."""
    from florence.evaluation import TaskMetric

    metric = TaskMetric()
    for batch in loader:
        data = model.data_preprocessor(batch, False)
        samples = model.predict(data["pixel_values"], data["input_ids"], data["attention_mask"], data["data_samples"],
                                model=inner)
        metric.process(batch, samples)
    metric.compute_metrics(metric.results)
    return metric.table


def heldout(args):
    from mmengine.runner import Runner
    from mmengine.runner.checkpoint import load_checkpoint

    from florence.deploy import export_onnx
    from florence.deploy.runtime import OnnxFlorence2
    from florence.engine import load_config
    from florence.registry import MODELS

    torch.set_num_threads(args.threads)
    cfg = load_config(args.config, _options(args.cfg_options))
    model = MODELS.build(cfg.model)
    load_checkpoint(model, args.checkpoint, map_location="cpu", strict=True)
    model.eval()
    size = cfg.train_dataloader.dataset.get("image_size", 768)
    loader = Runner.build_dataloader(cfg.test_dataloader)
    tables, seconds = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        runners = [("florence (PyTorch)", lambda: model.model)]
        for k, scheme in enumerate(args.quantize):
            folder = Path(tmp) / scheme
            export_onnx((model.model, model.tokenizer), folder, quantize=scheme, image_size=size)
            if k == 0:
                runners.append(("ORT fp32", lambda f=folder: OnnxFlorence2(f)))
            runners.append((f"ORT {scheme}", lambda f=folder: OnnxFlorence2(f, "int8")))
            if k == 0 and args.vision_fp32:  # which graph costs the points: the same, vision encoder in fp32
                mixed = Path(tmp) / f"{scheme}-vision-fp32"
                shutil.copytree(folder, mixed)
                shutil.copyfile(mixed / "onnx" / "vision_encoder.onnx", mixed / "onnx" / "vision_encoder_int8.onnx")
                runners.append((f"ORT {scheme}, vision fp32", lambda f=mixed: OnnxFlorence2(f, "int8")))
        for name, make in runners:
            inner = make()
            t0 = time.perf_counter()
            tables[name] = evaluate(model, inner, loader)
            seconds[name] = time.perf_counter() - t0
            print(f"{name}: {seconds[name]:.0f} s", flush=True)
    names = list(tables)
    print(f"\n{args.config} @ {args.checkpoint}; {args.threads} threads; {hardware.describe()}\n")
    print("| task | metric | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    for k, r in enumerate(tables[names[0]]):
        values = [tables[n][k]["value"] for n in names]
        sign = -1 if r["metric"] in LOWER_IS_BETTER else 1
        cells = [f"{v:.3f}" for v in values[:2]]
        for v in values[2:]:  # each int8 scheme: its value and its change against fp32, flagged beyond 2 points
            change = v - values[1]
            cells.append(f"{v:.3f} ({change:+.3f}{' LOSES > 0.02' if sign * change < -0.02 - 1e-9 else ''})")
        print(f"| {r['task']} | {r['metric']} | " + " | ".join(cells) + " |")
    print("| (time) | s | " + " | ".join(f"{seconds[n]:.0f}" for n in names) + " |")


LOWER_IS_BETTER = {"CER"}


def _options(pairs) -> dict:
    """KEY=VALUE pairs as mmengine's DictAction reads them (tools/test.py's --cfg-options)."""
    from mmengine.config import DictAction

    ns = argparse.Namespace(values={})
    if pairs:
        DictAction(option_strings=[], dest="values")(None, ns, pairs)
    return ns.values


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sp = sub.add_parser("speed")
    sp.add_argument("--presets", nargs="+", default=["base"], choices=["tiny", "base", "large"])
    sp.add_argument("--sections", nargs="+", default=["b1", "b2", "b3"], choices=["b1", "b2", "b3"])
    sp.add_argument("--b1-batches", nargs="+", type=int, default=[1, 8])
    sp.add_argument("--reps", type=int, default=3)
    sp.add_argument("--threads", type=int, default=torch.get_num_threads())
    sp.add_argument("--quantize", nargs="+", default=["int8", "int8-weights"],
                    help="the int8 schemes to time (florence.deploy.onnx.QUANTIZE)")
    hp = sub.add_parser("heldout")
    hp.add_argument("config")
    hp.add_argument("checkpoint")
    hp.add_argument("--threads", type=int, default=torch.get_num_threads())
    hp.add_argument("--quantize", nargs="+", default=["int8", "int8-per-channel", "int8-weights"],
                    help="the int8 schemes to compare (florence.deploy.onnx.QUANTIZE)")
    hp.add_argument("--vision-fp32", action="store_true",
                    help="also the first scheme with the vision encoder left in fp32")
    hp.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE",
                    help="e.g. test_dataloader.dataset.datasets.0.length=3750 (250 scenes per task)")
    args = parser.parse_args()
    {"speed": speed, "heldout": heldout}[args.command](args)


if __name__ == "__main__":
    main()
