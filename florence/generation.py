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
"""
from __future__ import annotations

import torch
from transformers import LogitsProcessor, LogitsProcessorList

__all__ = ["TextNoRepeatNGramLogitsProcessor", "ClosedSetLabelsLogitsProcessor", "generate_texts",
           "sequence_log_probs"]


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


class ClosedSetLabelsLogitsProcessor(LogitsProcessor):
    """Labels from a closed set: an output of items ``label (<loc> x locations)+`` (boxes: 4, quads:
    8) whose every label is one of ``classes``, then ``</s>``.

    A token trie over the classes' tokenisations (as a target writes a label: alone, between
    location tokens) says which tokens may follow at every step; a complete class may be followed by
    its location tokens, a complete item by more of them, another label or ``</s>``. Every other
    token is masked (-inf), for greedy, sampling and beam search alike, after the other processors.
    The label set wins over n-gram blocking: where the other processors banned every allowed token
    (a label of three or more tokens seen before, which ``no_repeat_ngram_size=3`` forbids), the
    allowed tokens get back the scores they had before the n-gram rule (:meth:`recorder`, which
    :func:`generate_texts` runs before it). A row left with no allowed token even then (``</s>``
    forced at ``max_new_tokens``) stays as the other processors made it. The state of a row is read
    from its tokens after ``<s>`` and cached per prefix, so a step costs a dictionary look-up per row."""

    def __init__(self, tokenizer, classes, location_ids, locations: int = 4):
        classes = [c.strip() for c in classes]
        if not classes or not all(classes):
            raise ValueError(f"classes must be non-empty strings, got {classes!r}")
        if any("<" in c for c in classes):
            raise ValueError(f"a class must not contain '<' (it starts a special token): {classes!r}")
        self.locations = int(locations)
        self.loc = sorted(int(i) for i in location_ids)
        self.loc_set = frozenset(self.loc)
        self.bos, self.eos = tokenizer.bos_token_id, tokenizer.eos_token_id
        self.trie: dict = {}  # token -> child node; the key None marks a complete class
        for c in classes:
            node = self.trie
            for t in tokenizer(c, add_special_tokens=False)["input_ids"]:
                node = node.setdefault(int(t), {})
            node[None] = True
        self._states: dict[tuple, tuple] = {}
        self._masks: dict[tuple, torch.Tensor] = {}
        self._before: torch.Tensor | None = None

    def recorder(self) -> LogitsProcessor:
        """A processor that keeps the scores it sees (unchanged) for this one: run it before the
        n-gram rule (``before_ngram``; :func:`generate_texts` does)."""
        owner = self

        class _Record(LogitsProcessor):
            before_ngram = True

            def __call__(self, input_ids, scores):
                owner._before = scores.clone()
                return scores
        return _Record()

    # a state: ("label", trie node, at item start) or ("loc", location tokens of the item so far)
    def _step(self, state, token):
        kind, value = state
        if kind == "label":
            node = value
            if token in self.loc_set and None in node and node is not self.trie:
                return ("loc", 1)
            child = node.get(token) if isinstance(node, dict) else None
            return ("label", child) if child is not None else ("bad", None)
        if kind == "loc":
            n = value
            if token in self.loc_set:
                return ("loc", n + 1)
            if n % self.locations == 0:  # a complete item: a new label starts
                return self._step(("label", self.trie), token)
            return ("bad", None)
        return state

    def _state(self, row: tuple):
        """The state after ``row``: from its longest cached prefix, stepping through the rest."""
        try:
            start = row.index(self.bos) + 1  # the output starts after <s>
        except ValueError:
            return ("label", self.trie)
        k = len(row)
        while k > start and row[:k] not in self._states:
            k -= 1
        state = self._states[row[:k]] if k > start else ("label", self.trie)
        if len(self._states) > 200_000:  # one generation's prefixes are far fewer; start afresh
            self._states.clear()
        for j in range(k, len(row)):
            state = self._step(state, row[j])
            self._states[row[:j + 1]] = state
        return state

    def allowed(self, state) -> list[int] | None:
        """Token ids allowed after ``state`` (None: anything, the row left the grammar)."""
        kind, value = state
        if kind == "label":
            node = value
            ids = [t for t in node if t is not None]
            if node is self.trie:
                ids.append(self.eos)  # no more items
            elif None in node:
                ids.extend(self.loc)
            return ids
        if kind == "loc":
            ids = list(self.loc)
            if value % self.locations == 0:
                ids += [t for t in self.trie if t is not None] + [self.eos]
            return ids
        return None

    def _blocked(self, state, vocab: int, device) -> torch.Tensor:
        """(vocab,) True where ``state`` forbids the token; cached per trie node / item state."""
        kind, value = state
        key = (kind, id(value) if kind == "label" else value % self.locations == 0 if kind == "loc" else None,
               vocab, device)
        row = self._masks.get(key)
        if row is None:
            ids = self.allowed(state)
            row = torch.zeros(vocab, dtype=torch.bool, device=device)
            if ids is not None:
                row.fill_(True)
                row[torch.as_tensor([i for i in ids if i < vocab], dtype=torch.long, device=device)] = False
            self._masks[key] = row
        return row

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        vocab = scores.shape[-1]
        blocked = torch.stack([self._blocked(self._state(tuple(row)), vocab, scores.device)
                               for row in input_ids.tolist()])
        possible = (torch.isfinite(scores) & ~blocked).any(-1)
        before = self._before
        if before is not None and before.shape == scores.shape and not bool(possible.all()):
            # what the n-gram rule banned, the label set needs: those tokens' scores from before it
            back = ~possible & (torch.isfinite(before) & ~blocked).any(-1)
            scores = torch.where(back[:, None] & ~blocked, before, scores)
            possible = possible | back
        # a row with nothing allowed possible (</s> forced at max_new_tokens) stays as it is
        return scores.masked_fill(blocked & possible[:, None], -float("inf"))


@torch.inference_mode()
def generate_texts(model, processor, pixel_values, input_ids, attention_mask=None, block_location_ngrams=False,
                   scores=True, image_rows=None, **generation_kwargs) -> tuple[list[str], list]:
    """Generate for a prepared batch: texts (special tokens kept) and, per row, the log-probabilities
    of its location tokens (one teacher-forced decoder pass; None per row when ``scores=False``).
    ``no_repeat_ngram_size`` applies to text n-grams only unless ``block_location_ngrams``.
    ``image_rows``: each prompt row's index into ``pixel_values`` when images are fewer than prompts
    (each image goes through the tower once); default: one image per row."""
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
    if ngram and not block_location_ngrams:
        kwargs["no_repeat_ngram_size"] = 0
        # given processors (a closed label set, ...) see what n-gram blocking left, except those that
        # ask to run before it (ClosedSetLabelsLogitsProcessor.recorder)
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
    log_probs = sequence_log_probs(model, encoded, ids)  # (B, T - 1), scoring ids[:, 1:]
    is_loc = torch.isin(ids[:, 1:], torch.tensor(loc_ids, device=ids.device))
    return texts, [lp[m].tolist() for lp, m in zip(log_probs.float().cpu(), is_loc.cpu())]


@torch.no_grad()
def sequence_log_probs(model, encoded, sequences: torch.Tensor, chunk: int = 4) -> torch.Tensor:
    """Log-probability of every generated token given its prefix, by one teacher-forced decoder
    pass: ``(B, T)`` sequences from ``model.generate`` -> ``(B, T - 1)``, entry ``t`` scoring
    ``sequences[:, t + 1]``; ``encoded`` is ``model.encode(...)``. For beam search these equal
    transformers' transition scores of the chosen beam (the per-step log-softmax), without keeping
    the ``(steps, beams, vocab)`` score tensors in memory. Rows run ``chunk`` at a time to bound the
    logits' memory."""
    encoder_outputs, mask = encoded
    out = []
    for i in range(0, sequences.shape[0], chunk):
        rows = slice(i, i + chunk)
        logits = model.language_model(
            encoder_outputs=(encoder_outputs.last_hidden_state[rows],), attention_mask=mask[rows],
            decoder_input_ids=sequences[rows, :-1], use_cache=False).logits.float()
        out.append(logits.log_softmax(-1).gather(-1, sequences[rows, 1:, None]).squeeze(-1))
    return torch.cat(out)
