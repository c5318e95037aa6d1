"""Generation: from a prepared batch to texts and per-token scores (:func:`generate_texts`, what the
pipeline and the engine's evaluation both call), and the n-gram policy it applies.

The model encodes image and prompt once (``model.encode``), generates from that encoding
(``model.generate(encoded=...)``: transformers' generate, with florence.accel's cache and decoding
step when the model is accelerated) and scores the chosen tokens by one teacher-forced pass
(:func:`sequence_log_probs`).

The published generation settings use ``no_repeat_ngram_size=3`` over all tokens, which also
forbids repeating any three location tokens: two objects sharing a corner or an edge
(``<loc_10><loc_20><loc_300>`` twice) cannot both be emitted, and the model is pushed to a wrong
box instead. :class:`TextNoRepeatNGramLogitsProcessor` blocks repeated n-grams of text only: an
n-gram that contains a location token is never blocked.

Outputs kept to their task's grammar (and labels to a closed set) are :mod:`florence.grammar`'s.
"""
from __future__ import annotations

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from .grammar import ClosedSetLabelsLogitsProcessor, Grammar, GrammarLogitsProcessor  # noqa: F401  (their home, once)

__all__ = ["TextNoRepeatNGramLogitsProcessor", "GrammarLogitsProcessor", "ClosedSetLabelsLogitsProcessor",
           "generate_texts", "sequence_log_probs", "location_scores", "SCORE_WINDOW"]


class TextNoRepeatNGramLogitsProcessor(LogitsProcessor):
    """Like transformers' ``NoRepeatNGramLogitsProcessor`` (vectorised the same way), except
    that n-grams containing any of ``skip_token_ids`` are exempt. With no skip ids it bans
    exactly what transformers' processor bans."""

    def __init__(self, ngram_size: int, skip_token_ids=()):
        if not isinstance(ngram_size, int) or ngram_size <= 0:
            raise ValueError(f"ngram_size must be a positive int, got {ngram_size!r}")
        self.ngram_size = ngram_size
        self.skip = torch.as_tensor(sorted(set(int(i) for i in skip_token_ids)), dtype=torch.long)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        n, length = self.ngram_size, input_ids.shape[-1]
        if length < n:
            return scores
        windows = input_ids.unfold(1, n, 1)  # (rows, length - n + 1, n): every n-gram so far
        prefix = input_ids[:, length + 1 - n:]  # the n - 1 tokens the next token would extend
        hit = (windows[..., :-1] == prefix[:, None]).all(-1)
        if self.skip.numel():
            hit &= ~torch.isin(windows, self.skip.to(windows.device)).any(-1)
        vocab = scores.shape[-1]
        banned = scores.new_zeros((scores.shape[0], vocab + 1), dtype=torch.bool)
        banned.scatter_(1, torch.where(hit, windows[..., -1].clamp(max=vocab), vocab), True)
        return scores.masked_fill(banned[:, :vocab], -float("inf"))


@torch.inference_mode()
def generate_texts(model, processor, pixel_values, input_ids, attention_mask=None, block_location_ngrams=False,
                   scores=True, image_rows=None, grammars=None, constrain=True, classes=None,
                   **generation_kwargs) -> tuple[list[str], list]:
    """Generate for a prepared batch: texts (special tokens kept) and, per row, one log-score per
    location token (:func:`location_scores`, from one teacher-forced decoder pass; None per row when
    ``scores=False``): the parsers give an item the exp of its location tokens' mean.
    ``no_repeat_ngram_size`` applies to text n-grams only unless ``block_location_ngrams``.
    ``image_rows``: each prompt row's index into ``pixel_values`` when images are fewer than prompts
    (each image goes through the tower once); default: one image per row. ``grammars``: one
    :class:`~florence.task.Grammar` per prompt row (its task's; None: none), which says how location
    tokens make items for the scores and, with ``constrain``, what decoding keeps to, with labels from
    ``classes`` when given (:class:`~florence.grammar.GrammarLogitsProcessor`)."""
    device, dtype = model.device, model.dtype
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    if image_rows is None:
        encoded = model.encode(pixel_values.to(device, dtype), input_ids.to(device), attention_mask.to(device))
    else:
        embeds = model.encode_image(pixel_values.to(device, dtype))
        embeds = embeds[torch.as_tensor(image_rows, device=embeds.device)]
        encoded = model.encode(None, input_ids.to(device), attention_mask.to(device), image_embeds=embeds)
    # the batch's float32 pixels are not needed while decoding; the caller may
    # still hold them (then this frees nothing)
    del pixel_values
    kwargs = dict(generation_kwargs)
    ngram = kwargs.get("no_repeat_ngram_size", model.generation_config.no_repeat_ngram_size) or 0
    loc_ids = processor.location_token_ids
    if grammars is not None and constrain:
        config = model.generation_config
        limit = kwargs.get("max_new_tokens") or (kwargs["max_length"] - 1 if kwargs.get("max_length") else None) \
            or config.max_new_tokens or config.max_length - 1
        listed = [grammars] if isinstance(grammars, Grammar) else list(grammars)
        per_row = [listed[r * len(listed) // len(input_ids)] for r in range(len(input_ids))]
        constraint = GrammarLogitsProcessor(processor.tokenizer, per_row, loc_ids, classes=classes,
                                            max_new_tokens=limit, regions=_regions(per_row, input_ids, loc_ids))
        kwargs["logits_processor"] = LogitsProcessorList(
            [constraint.recorder(), *kwargs.get("logits_processor", []), constraint])
    elif classes is not None:
        raise ValueError("classes= constrains the labels of a grammar: give grammars= (and constrain=True) too")
    if ngram and not block_location_ngrams:
        kwargs["no_repeat_ngram_size"] = 0
        # given processors (a grammar, ...) see what n-gram blocking left, except those that ask to
        # run before it (GrammarLogitsProcessor.recorder)
        given = list(kwargs.get("logits_processor", []))
        first = [p for p in given if getattr(p, "before_ngram", False)]
        kwargs["logits_processor"] = LogitsProcessorList(
            [*first, TextNoRepeatNGramLogitsProcessor(ngram, loc_ids), *(p for p in given if p not in first)])
    if kwargs.get("num_beams", model.generation_config.num_beams) == 1:
        kwargs["early_stopping"] = False  # a beam-search setting: transformers warns about it in greedy search
    ids = model.generate(encoded=encoded, **kwargs)
    if not isinstance(ids, torch.Tensor):  # return_dict_in_generate=True
        ids = ids.sequences
    texts = processor.batch_decode(ids)
    if not scores:
        return texts, [None] * len(texts)
    # (B, T - 1) and (B, T - 1, bins): scoring ids[:, 1:]
    log_probs, over_bins = sequence_log_probs(model, encoded, ids, location_ids=loc_ids)
    rows, grammars = ids.shape[0], None if grammars is None else list(grammars)
    out = []
    for r in range(rows):
        grammar = None if grammars is None else grammars[r * len(grammars) // rows]
        out.append(location_scores(ids[r, 1:].tolist(), log_probs[r].float().cpu(), over_bins[r].float().cpu(),
                                   processor.tokenizer, loc_ids, grammar))
    return texts, out


def _regions(grammars: list, input_ids, location_ids) -> list | None:
    """Per prompt row (``grammars``: one per row), the bins of its region input (its first four
    location tokens) where its grammar keeps inside it; None elsewhere, and when no grammar does."""
    if not any(g is not None and g.inside for g in grammars):
        return None
    bin_of = {int(t): k for k, t in enumerate(location_ids)}
    out = []
    for g, row in zip(grammars, input_ids.tolist()):
        bins = [bin_of[t] for t in row if t in bin_of][:4]
        if g is None or not g.inside or len(bins) != 4:
            out.append(None)
        else:  # x1 <= x2, y1 <= y2 whichever way round the prompt gave them
            out.append((min(bins[0], bins[2]), min(bins[1], bins[3]), max(bins[0], bins[2]), max(bins[1], bins[3])))
    return out


SCORE_WINDOW = 0.25  # location mass counted within this share of the item's width (x) or height (y)


def location_scores(ids: list, log_probs: torch.Tensor, over_bins: torch.Tensor, tokenizer, location_ids,
                    grammar=None) -> list[float]:
    """One log-score per location token of a generated row, such that an item's score (the exp of
    its location tokens' mean, as the parsers compute it) is

        P(its label) x geometric mean over its coordinates of P(coordinate within a quarter of the
        item's width, or height, of the chosen bin)

    the label's probability the exp of its tokens' mean log-probability (1 without a label). Chosen
    on held-out scenes of the main job for calibration against "IoU >= 0.5 with a ground truth of the
    same label" (``benchmarks/scores.py``): the probability of the one chosen bin, florence's score
    before, spreads over neighbouring bins and reads ~0.05 for boxes that are right. ``ids``: the row
    after the decoder start (``ids[t]`` scored by ``log_probs[t]``, over the bins by
    ``over_bins[t]``); ``grammar``: the task's (items of ``grammar.item_locations`` tokens; None:
    every location token scored by its own log-probability)."""
    from .grammar import token_letters

    loc = [int(i) for i in location_ids]
    loc_set = set(loc)
    is_loc = [i in loc_set for i in ids]
    if grammar is None:
        return [float(log_probs[t]) for t, hit in enumerate(is_loc) if hit]
    bin_of = {t: k for k, t in enumerate(loc)}
    bos = tokenizer.bos_token_id
    start = ids.index(bos) + 1 if bos in ids else 0
    letters = token_letters(ids[start:], tokenizer, loc)  # one letter per token after <s>
    groups, label_lp, run, current, polygon = [], 0.0, [], [], False
    for k, letter in enumerate(letters):
        t = start + k
        if letter == "L":
            if not current:
                polygon = grammar.item_locations is None or letters[k - 1:k] in ("P", "S")
            current.append(t)
            if not polygon and len(current) == grammar.item_locations:
                groups.append((label_lp, current))
                current = []
            continue
        if current and not (polygon and letter == "S"):
            groups.append((label_lp, current))
            current = []
        if letter == "T":
            run = run + [float(log_probs[t])] if letters[k - 1:k] == "T" else [float(log_probs[t])]
            label_lp = sum(run) / len(run)
    if current:
        groups.append((label_lp, current))
    value = {}
    bins = torch.arange(over_bins.shape[-1])
    for label_lp, positions in groups:
        chosen = [bin_of[ids[t]] for t in positions]
        extent = (max(chosen[0::2]) - min(chosen[0::2]), max(chosen[1::2], default=0) - min(chosen[1::2], default=0))
        for j, t in enumerate(positions):
            near = (bins - chosen[j]).abs() <= max(1.0, SCORE_WINDOW * extent[j % 2])
            value[t] = min(float(torch.logsumexp(over_bins[t][near], 0)), 0.0) + label_lp
    return [value.get(t, float(log_probs[t])) for t, hit in enumerate(is_loc) if hit]


@torch.no_grad()
def sequence_log_probs(model, encoded, sequences: torch.Tensor, chunk: int = 4, location_ids=None):
    """Log-probability of every generated token given its prefix, by one teacher-forced decoder
    pass: ``(B, T)`` sequences from ``model.generate`` -> ``(B, T - 1)``, entry ``t`` scoring
    ``sequences[:, t + 1]``; ``encoded`` is ``model.encode(...)``. For beam search these equal
    transformers' transition scores of the chosen beam (the per-step log-softmax), without keeping
    the ``(steps, beams, vocab)`` score tensors in memory. Rows run ``chunk`` at a time to bound the
    logits' memory. With ``location_ids`` also ``(B, T - 1, len(location_ids))``: every step's
    log-probabilities of the location tokens."""
    encoder_outputs, mask = encoded
    out, over_bins = [], []
    for i in range(0, sequences.shape[0], chunk):
        rows = slice(i, i + chunk)
        logits = model.language_model(
            encoder_outputs=(encoder_outputs.last_hidden_state[rows],), attention_mask=mask[rows],
            decoder_input_ids=sequences[rows, :-1], use_cache=False).logits.float()
        log_probs = logits.log_softmax(-1)
        out.append(log_probs.gather(-1, sequences[rows, 1:, None]).squeeze(-1))
        if location_ids is not None:
            over_bins.append(log_probs[..., torch.as_tensor(location_ids, device=log_probs.device)])
    if location_ids is not None:
        return torch.cat(out), torch.cat(over_bins)
    return torch.cat(out)
