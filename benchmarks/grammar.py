"""Task grammars as decoding constraints: what they cost per step, and what they change.

    python benchmarks/grammar.py cost [--preset base] [--tokens 64] [--beams 3] [--classes 80]
    python benchmarks/grammar.py heldout CONFIG CHECKPOINT|random [...] [--per-task 20]
    python benchmarks/grammar.py classes CONFIG CHECKPOINT [...] [--scenes 100] [--classes MODULE:FUNCTION]
    python benchmarks/grammar.py engines [--boxes 20] [--beams 3]   # pip install xgrammar outlines-core

``cost``: random weights (no download) at the published vocabulary size (ids the offline tokenizer
lacks are suppressed), exactly ``--tokens`` new tokens per run so every run takes the same number of
steps: ``<OD>`` and ``<OCR>`` without and with their grammar, and ``<OD>`` with ``--classes``
COCO-like names. Prints the seconds the constraint itself takes per step
(``GrammarLogitsProcessor.__call__``, timed inside generate) and that as a fraction of a step.

``heldout``: each checkpoint of the config (``random``: the config's model as initialised) on
``--per-task`` held-out scenes of every task (the config's test scenes), generated as the config
generates, without and with the grammar: per task, items and malformed items counted on the
generated tokens (:func:`florence.grammar.count_malformed`), and how many outputs that were
well-formed without the grammar keep their token ids with it.

``classes``: ``<OD>`` on ``--scenes`` held-out scenes of the config's test scenes, free, with the
grammar, and with ``classes=`` the scenes' label set (``--classes``, default the synthetic scenes'
category names): COCO mAP (pycocotools) and how many predicted labels are outside the set.

``engines``: the labelled-boxes grammar as a mask per step, replayed over one well-formed ``<OD>``
output of ``--boxes`` boxes on ``--beams`` rows at the published vocabulary size, by florence's
``GrammarLogitsProcessor``, xgrammar (EBNF; ``GrammarMatcher`` + bitmask) and outlines-core (regex;
``Index`` + ``Guide``), each where installed: milliseconds per step, mask included. Neither kept
engine expresses x2 >= x1 without enumerating bins; florence's mask does it too.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import florence
from florence import Florence2Config, Florence2ForConditionalGeneration, Florence2Processor, build_tokenizer, hardware
from florence.grammar import GrammarLogitsProcessor, count_malformed

NAMES = ("person bicycle car motorcycle airplane bus train truck boat traffic-light fire-hydrant stop-sign "
         "parking-meter bench bird cat dog horse sheep cow elephant bear zebra giraffe backpack umbrella handbag "
         "tie suitcase frisbee skis snowboard sports-ball kite baseball-bat baseball-glove skateboard surfboard "
         "tennis-racket bottle wine-glass cup fork knife spoon bowl banana apple sandwich orange broccoli carrot "
         "hot-dog pizza donut cake chair couch potted-plant bed dining-table toilet tv laptop mouse remote "
         "keyboard cell-phone microwave oven toaster sink refrigerator book clock vase scissors teddy-bear "
         "hair-drier toothbrush").split()


def cost(args):
    classes = [n.replace("-", " ") for n in NAMES[:args.classes]]
    tok = build_tokenizer(classes, vocab_size=400)
    torch.manual_seed(0)
    model = Florence2ForConditionalGeneration(Florence2Config.preset(args.preset, vocab_size=51289))
    pipe = florence.pipeline(model, Florence2Processor(tok))
    image = Image.fromarray((np.random.RandomState(0).rand(480, 640, 3) * 255).astype(np.uint8))
    gen = dict(max_new_tokens=args.tokens, min_new_tokens=args.tokens, num_beams=args.beams,
               suppress_tokens=list(range(len(tok), 51289)))
    inside = [0.0]  # seconds in the constraint, this run
    plain_call = GrammarLogitsProcessor.__call__

    def timed(self, input_ids, scores):
        t0 = time.perf_counter()
        out = plain_call(self, input_ids, scores)
        inside[0] += time.perf_counter() - t0
        return out
    GrammarLogitsProcessor.__call__ = timed

    def run(task, constrain) -> tuple[float, float]:
        task = florence.get_task(task)
        kwargs = pipe._constrained(constrain, [task], gen)
        inside[0] = 0.0
        t0 = time.perf_counter()
        pipe.generate_texts([image], [task.prompt()], **kwargs)
        return time.perf_counter() - t0, inside[0]

    print(f"{torch.get_num_threads()} threads, {hardware.describe()}, {args.preset}, {args.beams} beams, "
          f"{args.tokens} tokens, fp32, best of {args.reps}")
    print("| case | step without | step with | the constraint per step | share of a step |")
    print("|---|---|---|---|---|")
    for name, task, constrain in (("<OD> grammar", "<OD>", {"classes": None}),
                                  (f"<OD> {len(classes)} classes", "<OD>", {"classes": classes}),
                                  ("<OCR> grammar", "<OCR>", {"classes": None})):
        run(task, None), run(task, constrain)  # warm-up
        free = min(run(task, None)[0] for _ in range(args.reps)) / args.tokens
        timings = [run(task, constrain) for _ in range(args.reps)]
        with_ = min(t for t, _ in timings) / args.tokens
        own = min(i for _, i in timings) / args.tokens
        print(f"| {name} | {free * 1000:.1f} ms | {with_ * 1000:.1f} ms | {own * 1000:.2f} ms | {own / free:.1%} |")


def heldout(args):
    from florence.data import SyntheticScenes
    from florence.engine import export_checkpoint, load_config
    from florence.registry import MODELS

    cfg = load_config(args.config)
    scenes_cfg = {k: v for k, v in cfg.test_dataloader.dataset.datasets[0].items() if k not in ("type", "length")}
    tasks = florence.list_tasks()
    data = SyntheticScenes(**{**scenes_cfg, "length": args.per_task * len(tasks)})
    samples = [data[i] for i in range(len(data))]
    gen = dict(cfg.model.get("generation") or {})
    print(f"{args.config}: {len(samples)} held-out samples ({args.per_task} per task), generation {gen}, "
          f"{hardware.describe()}")
    with tempfile.TemporaryDirectory() as tmp:
        for checkpoint in args.checkpoints:
            folder = Path(tmp) / Path(checkpoint).stem
            if checkpoint == "random":
                torch.manual_seed(0)
                model = MODELS.build(cfg.model)
                torch.save({"state_dict": model.state_dict(), "meta": {}}, Path(tmp) / "random.pth")
                checkpoint_file = Path(tmp) / "random.pth"
            else:
                checkpoint_file = checkpoint
            export_checkpoint(cfg, checkpoint_file, folder)
            pipe = florence.pipeline(str(folder), dtype="float32")
            table(pipe, samples, gen, checkpoint, args.batch_size)


def table(pipe, samples, gen, name, batch_size):
    tok, loc = pipe.processor.tokenizer, pipe.processor.location_token_ids
    pipe.scores = False  # texts only
    rows: dict[str, list] = {}
    seconds = {False: 0.0, True: 0.0}
    for start in range(0, len(samples), batch_size):
        chunk = samples[start:start + batch_size]
        tasks = [florence.get_task(s["task"]) for s in chunk]
        images = [s["image"] for s in chunk]
        prompts = [t.prompt(s["text_input"], s["image_size"]) for t, s in zip(tasks, chunk)]
        texts = {}
        for on in (False, True):
            t0 = time.perf_counter()
            texts[on], _ = pipe.generate_texts(images, prompts,
                                               **pipe._constrained({"classes": None} if on else None, tasks, gen))
            seconds[on] += time.perf_counter() - t0
        for task, free, kept in zip(tasks, texts[False], texts[True]):
            ids = {on: tok(t.replace("<pad>", ""), add_special_tokens=False)["input_ids"]
                   for on, t in ((False, free), (True, kept))}
            a, b = count_malformed(ids[False], task.grammar, tok, loc), count_malformed(ids[True], task.grammar, tok, loc)
            rows.setdefault(task.token, []).append((a, b, ids[False] == ids[True]))
    print(f"\n{name}: generation without the grammar {seconds[False]:.1f} s, with it {seconds[True]:.1f} s "
          f"({seconds[True] / seconds[False] - 1:+.1%})\n")
    print("| task | items off | malformed items off | malformed outputs off | items on | malformed items on | "
          "malformed outputs on | well-formed outputs kept token for token |")
    print("|---|---|---|---|---|---|---|---|")
    total = np.zeros(7)
    for token, got in rows.items():
        well = [same for (a, _, same) in got if a[2]]
        values = [sum(a[0] for a, _, _ in got), sum(a[1] for a, _, _ in got), sum(not a[2] for a, _, _ in got),
                  sum(b[0] for _, b, _ in got), sum(b[1] for _, b, _ in got), sum(not b[2] for _, b, _ in got)]
        total += [*values, 0]
        print(f"| {token} | " + " | ".join(str(v) for v in values) + f" | {sum(well)}/{len(well)} |")
    kept = sum(same for got in rows.values() for (a, _, same) in got if a[2])
    well = sum(1 for got in rows.values() for (a, _, _) in got if a[2])
    print(f"| all | " + " | ".join(str(int(v)) for v in total[:6]) + f" | {kept}/{well} |")
    print(f"malformed-item rate: off {total[1] / max(total[0], 1):.1%}, on {total[4] / max(total[3], 1):.1%}")


def classes(args):
    from florence._lazy import named
    from florence.data import SyntheticScenes
    from florence.engine import export_checkpoint, load_config
    from florence.evaluation.functions import coco_bbox_map

    cfg = load_config(args.config)
    scenes_cfg = {k: v for k, v in cfg.test_dataloader.dataset.datasets[0].items()
                  if k not in ("type", "length", "cycle_tasks", "task_weights")}
    data = SyntheticScenes(**{**scenes_cfg, "length": args.scenes, "tasks": ["<OD>"]})
    samples = [data[i] for i in range(len(data))]
    label_set = list(named(args.classes)())
    gen = dict(cfg.model.get("generation") or {})
    print(f"{args.config}: <OD> on {len(samples)} held-out scenes, {len(label_set)} classes, generation {gen}, "
          f"{hardware.describe()}")
    print("| checkpoint | run | mAP | mAP@0.5 | boxes | labels outside the set | seconds |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for checkpoint in args.checkpoints:
            folder = Path(tmp) / Path(checkpoint).stem
            export_checkpoint(cfg, checkpoint, folder)
            pipe = florence.pipeline(str(folder), dtype="float32")
            for name, options in (("free", {}), ("grammar", {"grammar": True}), ("classes=", {"classes": label_set})):
                t0 = time.perf_counter()
                preds = pipe([s["image"] for s in samples], "<OD>", batch_size=args.batch_size, **options, **gen)
                seconds = time.perf_counter() - t0
                scored = [{"pred": p["<OD>"], "gt": s["annotation"], "image_size": s["image_size"]}
                          for p, s in zip(preds, samples)]
                m = coco_bbox_map(scored)
                boxes = sum(len(p["<OD>"]["labels"]) for p in preds)
                outside = sum(label not in label_set for p in preds for label in p["<OD>"]["labels"])
                print(f"| {Path(checkpoint).stem} | {name} | {m['bbox_mAP']:.3f} | {m['bbox_mAP_50']:.3f} | {boxes} | "
                      f"{outside} | {seconds:.0f} |", flush=True)


def engines(args):
    classes = ["red circle", "blue square", "green triangle", "tree"]
    tok = build_tokenizer(classes, vocab_size=400)
    vocab, rows = 51289, args.beams
    rng = np.random.default_rng(0)
    text = ""
    for k in range(args.boxes):
        x1, y1 = rng.integers(0, 500, 2)
        text += classes[k % len(classes)] + "".join(f"<loc_{v}>" for v in (x1, y1, x1 + 100, y1 + 100))
    output = tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    start = [tok.eos_token_id, tok.bos_token_id]
    logits = torch.zeros(rows, vocab)
    timings = {}

    def timed(name, setup, step):
        """``step(state, t)`` returns the logits masked for position ``t`` of the output: mean ms per
        step; then a second replay checks that every output token was allowed where it stands."""
        state = setup()
        t0 = time.perf_counter()
        for t in range(len(output)):
            step(state, t)
        timings[name] = (time.perf_counter() - t0) / len(output) * 1000
        state = setup()
        refused = [t for t in range(len(output)) if not torch.isfinite(step(state, t)[:, output[t]]).all()]
        if refused:
            raise SystemExit(f"{name} refuses the well-formed output at positions {refused}")

    loc = tok.convert_tokens_to_ids([f"<loc_{k}>" for k in range(1000)])
    grammar = florence.get_task("<OD>").grammar
    timed("florence GrammarLogitsProcessor", lambda: GrammarLogitsProcessor(tok, grammar, loc),
          lambda p, t: p(torch.tensor([start + output[:t]] * rows), logits.clone()))
    try:
        import xgrammar as xgr
    except ImportError:
        print("xgrammar: not installed (pip install xgrammar)")
    else:
        info = xgr.TokenizerInfo.from_huggingface(tok, vocab_size=vocab)
        ebnf = ('root ::= item*\nitem ::= label box+\nlabel ::= [^<]+\nbox ::= loc loc loc loc\n'
                'loc ::= "<loc_" [0-9] [0-9]? [0-9]? ">"\n')
        compiled = xgr.GrammarCompiler(info).compile_grammar(ebnf)

        def xg_setup():
            return [xgr.GrammarMatcher(compiled) for _ in range(rows)], xgr.allocate_token_bitmask(rows, vocab)

        def xg_step(state, t):
            matchers, bitmask = state
            for r, m in enumerate(matchers):
                if t:
                    m.accept_token(output[t - 1])
                m.fill_next_token_bitmask(bitmask, r)
            masked = logits.clone()
            xgr.apply_token_bitmask_inplace(masked, bitmask)
            return masked
        timed("xgrammar", xg_setup, xg_step)
    try:
        from outlines_core import Guide, Index, Vocabulary
    except ImportError:
        print("outlines-core: not installed (pip install outlines-core)")
    else:
        words: dict[str, list[int]] = {}
        for token, i in tok.get_vocab().items():
            if i != tok.eos_token_id:
                words.setdefault(tok.convert_tokens_to_string([token]), []).append(i)
        t0 = time.perf_counter()
        index = Index(r"([^<]+((<loc_[0-9]{1,3}>){4})+)*", Vocabulary(tok.eos_token_id, words))
        print(f"outlines-core: index built in {time.perf_counter() - t0:.1f} s")

        def oc_step(guides, t):
            mask = torch.ones(rows, vocab, dtype=torch.bool)
            for r, g in enumerate(guides):
                allowed = g.advance(output[t - 1]) if t else g.get_tokens()
                mask[r, torch.as_tensor(allowed)] = False
            return logits.clone().masked_fill_(mask, -float("inf"))
        timed("outlines-core", lambda: [Guide(index) for _ in range(rows)], oc_step)
    print(f"labelled boxes, {args.boxes} boxes = {len(output)} tokens, {rows} rows, vocabulary {vocab}, "
          f"{torch.get_num_threads()} threads, {hardware.describe()}")
    print("| engine | ms per step |\n|---|---|")
    for name, ms in timings.items():
        print(f"| {name} | {ms:.2f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    cp = sub.add_parser("cost")
    cp.add_argument("--preset", default="base")
    cp.add_argument("--tokens", type=int, default=64)
    cp.add_argument("--beams", type=int, default=3)
    cp.add_argument("--classes", type=int, default=80)
    cp.add_argument("--reps", type=int, default=3)
    hp = sub.add_parser("heldout")
    hp.add_argument("config")
    hp.add_argument("checkpoints", nargs="+", help="training checkpoints, or 'random' (the config's initial model)")
    hp.add_argument("--per-task", type=int, default=20)
    hp.add_argument("--batch-size", type=int, default=16)
    kp = sub.add_parser("classes")
    kp.add_argument("config")
    kp.add_argument("checkpoints", nargs="+")
    kp.add_argument("--scenes", type=int, default=100)
    kp.add_argument("--classes", default="florence.data.synthetic:category_names")
    kp.add_argument("--batch-size", type=int, default=16)
    ep = sub.add_parser("engines")
    ep.add_argument("--boxes", type=int, default=20)
    ep.add_argument("--beams", type=int, default=3)
    args = parser.parse_args()
    {"cost": cost, "heldout": heldout, "classes": classes, "engines": engines}[args.command](args)


if __name__ == "__main__":
    main()
