"""Which per-item score means "this item is right": candidates compared on held-out scenes.

    python benchmarks/scores.py CONFIG CHECKPOINT [--per-task 40] [--window 1 2 4]

The checkpoint (exported) generates every location task's output on the config's held-out scenes
(``--per-task`` each, the config's decoding, grammar on), and one teacher-forced pass over each
output gives every token's distribution. Candidate scores per item:

* ``location tokens``: exp of the mean log-probability of the item's location tokens (florence's
  score until now);
* ``location mass +-k``: exp of the mean log of the probability mass within k bins of each chosen
  location bin (a box one bin off is the same box);
* ``location mass +-f of the box``: the same within f times the item's width (x tokens) or height
  (y tokens), at least one bin: the tolerance IoU >= 0.5 gives scales with the box;
* ``label``: exp of the mean log-probability of the item's label tokens (1 for unlabelled tasks);
* ``label x location mass +-k``: their product;
* ``florence scores``: what the pipeline returns as ``scores`` (the candidate it implements).

An item is correct when its region's box has IoU >= 0.5 with a ground-truth region of the same label
not matched yet (items in order of the candidate's score). Per task and candidate: expected
calibration error (10 equal-width bins; lower is better) and the AP the candidate's ranking gives
(all-point precision-recall over the task's items, recall over its ground-truth regions).
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

import florence
from florence import hardware
from florence.evaluation.functions import box_iou
from florence.grammar import output_letters

TASKS = ("<OD>", "<DENSE_REGION_CAPTION>", "<REGION_PROPOSAL>", "<CAPTION_TO_PHRASE_GROUNDING>",
         "<OPEN_VOCABULARY_DETECTION>", "<OCR_WITH_REGION>")


@torch.no_grad()
def token_distributions(pipe, images, prompts, texts):
    """Per output: (ids after <s>, log-probability of each, log-softmax rows over the location bins)."""
    tok, loc = pipe.processor.tokenizer, pipe.processor.location_token_ids
    batch = pipe.processor(images=images, text=prompts)
    model = pipe.model
    encoder_outputs, mask = model.encode(batch["pixel_values"].to(model.dtype), batch["input_ids"],
                                         batch["attention_mask"])
    rows = [tok(t.replace("<pad>", ""), add_special_tokens=False)["input_ids"] for t in texts]
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), tok.pad_token_id)
    for r, row in enumerate(rows):
        ids[r, :len(row)] = torch.tensor(row)
    logits = model.language_model(encoder_outputs=(encoder_outputs.last_hidden_state,), attention_mask=mask,
                                  decoder_input_ids=ids[:, :-1], use_cache=False).logits.float()
    log_probs = logits.log_softmax(-1)
    out = []
    for r, row in enumerate(rows):
        start = row.index(tok.bos_token_id) + 1
        positions = range(start - 1, len(row) - 1)  # logits at t predict row[t + 1]
        chosen = [float(log_probs[r, t, row[t + 1]]) for t in positions]
        over_bins = log_probs[r, list(positions)][:, loc]  # (tokens, 1000)
        out.append((row[start:], chosen, over_bins))
    return out


def candidates(task, text, image_size, ids, chosen, over_bins, letters, windows, fractions) -> dict[str, list] | None:
    """Each candidate's item scores, in the order ``task.decode_output`` lists the items; None when
    the token walk and the parser disagree on the items."""
    per_item = 8 if task.label_locations == 8 else 4
    label_lp, items = 0.0, []  # items: (label log-prob, [token positions of its locations])
    run: list[int] = []
    label_tokens: list[float] = []
    for k, letter in enumerate(letters):
        if letter == "T":
            if k == 0 or letters[k - 1] != "T":
                label_tokens = []
            label_tokens.append(chosen[k])
            label_lp = float(np.mean(label_tokens))
        elif letter == "L":
            run.append(k)
            if len(run) == per_item:
                items.append((label_lp if "T" in letters[:k] else 0.0, run))
                run = []
    regions = task.regions(task.decode_output(text, image_size, None))
    if len(regions) != len(items):
        return None
    bins = torch.arange(over_bins.shape[-1])
    out = {"location tokens": [], "label": []}
    for w in windows:
        out[f"location mass +-{w}"], out[f"label x location mass +-{w}"] = [], []
    for f in fractions:
        out[f"location mass +-{f:g} of the box"], out[f"label x location mass +-{f:g} of the box"] = [], []
    for label_lp, positions in items:
        out["location tokens"].append(float(np.exp(np.mean([chosen[p] for p in positions]))))
        out["label"].append(float(np.exp(label_lp)))
        chosen_bins = [_bin_of(ids[p]) for p in positions]
        extent = (max(chosen_bins[0::2]) - min(chosen_bins[0::2]), max(chosen_bins[1::2]) - min(chosen_bins[1::2]))
        for f in fractions:
            masses = []
            for j, p in enumerate(positions):
                near = (bins - chosen_bins[j]).abs() <= max(1.0, f * extent[j % 2])
                masses.append(float(torch.logsumexp(over_bins[p][near], 0)))
            mass = float(np.exp(np.mean(masses)))
            out[f"location mass +-{f:g} of the box"].append(mass)
            out[f"label x location mass +-{f:g} of the box"].append(mass * float(np.exp(label_lp)))
        for w in windows:
            masses = []
            for p in positions:
                chosen_bin = _bin_of(ids[p])
                near = (bins - chosen_bin).abs() <= w
                masses.append(float(torch.logsumexp(over_bins[p][near], 0)))
            mass = float(np.exp(np.mean(masses)))
            out[f"location mass +-{w}"].append(mass)
            out[f"label x location mass +-{w}"].append(mass * float(np.exp(label_lp)))
    return out


_LOC_IDS: dict[int, int] = {}


def _bin_of(token_id: int) -> int:
    return _LOC_IDS[int(token_id)]


def correct(regions, truth, scores) -> list[bool]:
    """Per region (in the given order): matched to a not yet matched ground-truth region of the same
    label with IoU >= 0.5, regions taken in order of score."""
    used = [False] * len(truth)
    right = [False] * len(regions)
    for i in sorted(range(len(regions)), key=lambda i: -scores[i]):
        best, best_iou = None, 0.5
        for j, t in enumerate(truth):
            if not used[j] and t.label.strip() == regions[i].label.strip():
                iou = box_iou(regions[i].box(), t.box())
                if iou >= best_iou:
                    best, best_iou = j, iou
        if best is not None:
            used[best], right[i] = True, True
    return right


def ece(scores, right, bins: int = 10) -> float:
    scores, right = np.asarray(scores), np.asarray(right, dtype=float)
    edges = np.minimum((scores * bins).astype(int), bins - 1)
    return float(sum(abs(right[edges == b].mean() - scores[edges == b].mean()) * (edges == b).sum()
                     for b in range(bins) if (edges == b).any()) / max(len(scores), 1))


def average_precision(scores, right, n_truth: int) -> float:
    order = np.argsort(-np.asarray(scores), kind="stable")
    hits = np.asarray(right, dtype=float)[order]
    tp = np.cumsum(hits)
    precision = tp / np.arange(1, len(hits) + 1)
    recall = tp / max(n_truth, 1)
    # all-point interpolation: precision made monotone, summed over recall steps
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    return float(np.sum(np.diff(np.concatenate([[0.0], recall])) * precision))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("config")
    parser.add_argument("checkpoint")
    parser.add_argument("--per-task", type=int, default=40)
    parser.add_argument("--window", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--fraction", type=float, nargs="+", default=[0.125, 0.25])
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    from florence.data import SyntheticScenes
    from florence.engine import export_checkpoint, load_config

    cfg = load_config(args.config)
    scenes_cfg = {k: v for k, v in cfg.test_dataloader.dataset.datasets[0].items()
                  if k not in ("type", "length", "cycle_tasks", "task_weights")}
    gen = dict(cfg.model.get("generation") or {})
    with tempfile.TemporaryDirectory() as tmp:
        export_checkpoint(cfg, args.checkpoint, Path(tmp) / "model")
        pipe = florence.pipeline(str(Path(tmp) / "model"), dtype="float32", scores=False)
    tok, loc = pipe.processor.tokenizer, pipe.processor.location_token_ids
    _LOC_IDS.update({int(t): k for k, t in enumerate(loc)})
    print(f"{args.config} @ {args.checkpoint}: {args.per_task} held-out scenes per task, generation {gen}, "
          f"grammar on, {hardware.describe()}\n")
    print("| task | candidate | items | correct | ECE | AP |")
    print("|---|---|---|---|---|---|")
    for token in TASKS:
        task = florence.get_task(token)
        data = SyntheticScenes(**{**scenes_cfg, "length": args.per_task, "tasks": [token]})
        samples = [data[i] for i in range(len(data))]
        got: dict[str, tuple[list, list]] = {}
        n_truth = skipped = 0
        for start in range(0, len(samples), args.batch_size):
            chunk = samples[start:start + args.batch_size]
            images = [s["image"] for s in chunk]
            prompts = [task.prompt(s["text_input"], s["image_size"]) for s in chunk]
            pipe.scores = True  # florence's own scores, to compare with the candidate they implement
            texts, own = pipe.generate_texts(images, prompts, grammars=[task.grammar] * len(chunk), **gen)
            for s, text, sc, (ids, chosen, over_bins) in zip(chunk, texts, own, token_distributions(pipe, images,
                                                                                                   prompts, texts)):
                letters = output_letters([tok.bos_token_id, *ids], tok, loc)
                found = candidates(task, text, s["image_size"], ids, chosen, over_bins, letters, args.window,
                                   args.fraction)
                truth = task.regions(s["annotation"])
                n_truth += len(truth)
                if found is None:
                    skipped += 1
                    continue
                regions = task.regions(task.decode_output(text, s["image_size"], None))
                found["florence scores"] = [r.score for r in task.regions(task.decode_output(text, s["image_size"], sc))]
                for name, scores in found.items():
                    right = correct(regions, truth, scores)
                    got.setdefault(name, ([], []))
                    got[name][0].extend(scores)
                    got[name][1].extend(right)
        for name, (scores, right) in got.items():
            print(f"| {token} | {name} | {len(scores)} | {sum(right)} | {ece(scores, right):.3f} | "
                  f"{average_precision(scores, right, n_truth):.3f} |", flush=True)
        if skipped:
            print(f"| {token} | ({skipped} outputs skipped: token walk and parser disagree) | | | | |")


if __name__ == "__main__":
    main()
