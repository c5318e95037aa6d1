"""Outputs well-formed by construction: a task's grammar as a decoding constraint.

Every output kind declares its grammar where it is defined (``Task.grammar``, a
:class:`~florence.task.Grammar`): a regular expression over the *classes* of the tokens after
``<s>``, one letter per token:

====== ====================================================================
``T``  a text token: any ordinary vocabulary token without ``<`` (labels, captions, OCR)
``L``  a location token ``<loc_N>``
``S``  ``<sep>`` (between the parts of a polygon)
``P``  ``<poly>`` / ``Q`` ``</poly>`` (around a polygon)
``E``  ``</s>`` (the end)
====== ====================================================================

e.g. labelled boxes are ``(T+(L{4})+)*E``. :class:`GrammarLogitsProcessor` masks, at every step
and for every row (greedy, sampling and beams alike), each token that would take the output out of
its grammar. It also keeps

* boxes ordered (``Grammar(boxes=True)``): a box's x2 and y2 location tokens are at least its x1
  and y1 (a run of location tokens not after ``<poly>`` / ``<sep>`` is boxes);
* the mask of a region inside the region (``Grammar(inside=True)``): each x location token
  within the prompt's region's x1..x2 bins, each y within y1..y2;
* labels in a closed set (``classes=``): a token trie over the classes' tokenisations decides the
  text tokens of every label, and a label ends only where a class does;
* the output inside ``max_new_tokens``: near the end, an item is started only if it can be
  finished before the last step (where transformers forces ``</s>``).

Token classes are regular, so a row's state is its class string; which letters may come next is
``regex``'s partial match of the string plus each letter, cached per string and per prefix of token
ids, so a step costs a dictionary look-up and a few cached masks per row (``benchmarks/grammar.py``).
"""
from __future__ import annotations

import functools
from collections import deque
from dataclasses import dataclass

import regex
import torch
from transformers import LogitsProcessor

from .task.base import Grammar, check_classes

__all__ = ["GrammarLogitsProcessor", "ClosedSetLabelsLogitsProcessor", "Grammar", "check_classes", "output_letters",
           "count_malformed"]

_LETTERS = "TLSPQE"
_HORIZON = 24  # the last steps before max_new_tokens, where an item is started only if it can finish
_MARKS = {"S": "<sep>", "P": "<poly>", "Q": "</poly>"}


@dataclass
class _State:
    letters: str  # the class string of the output so far
    node: dict | None  # the trie node of the label being written (closed set), else None
    boxes: bool  # the trailing run of location tokens is boxes


class _Machine:
    """One grammar over one tokenizer: letters, masks and the per-prefix state cache."""

    def __init__(self, grammar: Grammar, owner: "GrammarLogitsProcessor"):
        self.grammar, self.owner = grammar, owner
        self.pattern = regex.compile(grammar.pattern)
        self.states: dict[tuple, _State] = {}
        self.next_letters: dict[str, str] = {}
        self.ends: dict[str, int | None] = {}

    def state(self, row: tuple) -> _State | None:
        """The state after ``row`` (None before ``<s>``: not constrained yet)."""
        o = self.owner
        try:
            start = row.index(o.bos) + 1
        except ValueError:
            return None
        k = len(row)
        while k > start and row[:k] not in self.states:
            k -= 1
        state = self.states[row[:k]] if k > start else _State("", None, False)
        if len(self.states) > 200_000:  # far more than one generation's prefixes: start afresh
            self.states.clear()
        for j in range(k, len(row)):
            state = self.step(state, row[j])
            self.states[row[:j + 1]] = state
        return state

    def step(self, state: _State, token: int) -> _State:
        o = self.owner
        letter = o.letter_of.get(token, "?")
        last = state.letters[-1:]
        node = None
        if letter == "T" and o.trie is not None:
            parent = state.node if last == "T" else o.trie
            node = parent.get(token) if parent is not None else None
        boxes = state.boxes if last == "L" else last not in ("P", "S")
        return _State(state.letters + letter, node, boxes)

    def letters(self, text: str) -> str:
        """The letters that may follow ``text`` and stay a prefix of the grammar."""
        got = self.next_letters.get(text)
        if got is None:
            got = "".join(c for c in _LETTERS if self.pattern.fullmatch(text + c, partial=True))
            if len(self.next_letters) > 200_000:
                self.next_letters.clear()
            self.next_letters[text] = got
        return got

    def shortest_end(self, text: str) -> int | None:
        """Fewest tokens that complete ``text`` (``</s>`` included), None: more than ``_HORIZON``.
        A text letter counts one token (a closed-set label's own length is the caller's)."""
        got = self.ends.get(text, -1)
        if got != -1:
            return got
        got, queue = None, deque([(text, 0)])
        if self.pattern.fullmatch(text):
            got, queue = 0, deque()
        while queue:
            t, n = queue.popleft()
            if n >= _HORIZON:
                break
            letters = self.letters(t)
            if any(self.pattern.fullmatch(t + c) for c in letters):
                got = n + 1
                break
            queue.extend((t + c, n + 1) for c in letters if not (c == "T" and t[-1:] == "T"))  # T: a whole label
        if len(self.ends) > 200_000:
            self.ends.clear()
        self.ends[text] = got
        return got


class GrammarLogitsProcessor(LogitsProcessor):
    """Masks (-inf) every token that would take a row out of its task's grammar.

    Args:
        tokenizer: the model's tokenizer.
        grammars: one :class:`Grammar` per prompt (rows of beam search or of several returned
            sequences follow their prompt; None: that prompt is not constrained), or one for all.
        location_ids: the ids of ``<loc_0>`` ... ``<loc_999>``, in bin order.
        classes: labels every text run of a labelled item must be one of (None: free text).
        max_new_tokens: the generation's limit, to finish items before it (None: not known).
        regions: per prompt, the location bins ``(x1, y1, x2, y2)`` of its region input, which
            the locations of a grammar with ``inside=True`` keep within (None: no region).

    It runs after the other processors. Where they banned every token the grammar allows (the
    n-gram rule on a label of three or more tokens seen before), the allowed tokens get back the
    scores they had before that rule (:meth:`recorder`, which :func:`~florence.generation.generate_texts`
    runs first). A row with nothing allowed even then stays as the other processors made it.
    """

    def __init__(self, tokenizer, grammars, location_ids, classes=None, max_new_tokens: int | None = None,
                 regions=None):
        self.bos, self.eos = tokenizer.bos_token_id, tokenizer.eos_token_id
        self.loc = [int(i) for i in location_ids]
        self.letter_of = _letters(tokenizer, tuple(self.loc))
        self.bin_of = {t: k for k, t in enumerate(self.loc)}
        self.trie = None
        if classes is not None:
            self.trie = {}  # token -> child node; the key None marks a complete class
            for c in check_classes(classes):
                node = self.trie
                for t in tokenizer(c, add_special_tokens=False)["input_ids"]:
                    node = node.setdefault(int(t), {})
                node[None] = True
            self._depth: dict[int, int] = {}
        self.max_new_tokens = max_new_tokens
        grammars = [grammars] if isinstance(grammars, Grammar) else list(grammars)
        machines = {g: None if g is None else _Machine(g, self) for g in set(grammars)}
        self.machines = [machines[g] for g in grammars]
        self.regions = [None] * len(grammars) if regions is None else list(regions)
        if len(self.regions) != len(grammars):
            raise ValueError(f"{len(grammars)} grammars but {len(self.regions)} regions: give one per prompt")
        self._masks: dict = {}
        self._before: torch.Tensor | None = None

    def recorder(self) -> LogitsProcessor:
        """A processor that keeps the scores it sees (unchanged) for this one: run it before the
        n-gram rule (``before_ngram``; :func:`~florence.generation.generate_texts` does)."""
        owner = self

        class _Record(LogitsProcessor):
            before_ngram = True

            def __call__(self, input_ids, scores):
                owner._before = scores.clone()
                return scores
        return _Record()

    # ---- masks ---------------------------------------------------------------------------------
    def _mask(self, key, ids, vocab: int, device) -> torch.Tensor:
        """(vocab,) True at ``ids()``, cached under ``key``."""
        full = (key, vocab, device)
        mask = self._masks.get(full)
        if mask is None:
            mask = torch.zeros(vocab, dtype=torch.bool, device=device)
            ids = [i for i in ids() if i < vocab]
            if ids:
                mask[torch.as_tensor(ids, dtype=torch.long, device=device)] = True
            self._masks[full] = mask
        return mask

    def _letter_ids(self, letters: str) -> list[int]:
        return [i for i, c in self.letter_of.items() if c in letters]

    def _depth_of(self, node: dict) -> int:
        """Fewest tokens that complete a class from trie ``node``."""
        got = self._depth.get(id(node))
        if got is None:
            got = 0 if None in node else 1 + min(self._depth_of(c) for t, c in node.items() if t is not None)
            self._depth[id(node)] = got
        return got

    def allowed(self, machine: _Machine, state: _State, row: tuple, vocab: int, device,
                region=None) -> torch.Tensor:
        """(vocab,) True where the grammar allows the token after ``row`` (in ``state``), inside
        ``region`` (bins x1, y1, x2, y2) when the grammar keeps to one."""
        text = state.letters
        letters = machine.letters(text)
        in_label = self.trie is not None and text[-1:] == "T"
        if in_label and (state.node is None or None not in state.node):
            letters = "T" if "T" in letters else ""  # the class is not finished
        left = None if self.max_new_tokens is None else self.max_new_tokens + 1 - len(row)
        if left is not None and left > _HORIZON:
            left = None
        if left is not None:  # near the end: start only what can be finished
            letters = "".join(c for c in letters if _within(machine.shortest_end(text + c), left - 1))
        mask = self._mask(("letters", letters.replace("T", "")), lambda: self._letter_ids(letters.replace("T", "")),
                          vocab, device)
        if "T" in letters:
            if self.trie is None:
                text_mask = self._mask(("letters", "T"), lambda: self._letter_ids("T"), vocab, device)
            else:
                node = state.node if in_label else self.trie
                # near the end, a token whose class cannot be finished (with what must follow) is out
                room = None if left is None else left - 1 - machine.shortest_end(text + "T")
                text_mask = self._mask(
                    ("trie", id(node), room),
                    lambda: [t for t, c in node.items() if t is not None
                             and (room is None or self._depth_of(c) <= room)], vocab, device)
            mask = mask | text_mask
        if "L" in letters and machine.grammar.boxes and text[-1:] == "L" and state.boxes:
            run = len(text) - len(text.rstrip("L"))
            low = self.bin_of.get(row[-2], 0)
            if run % 4 in (2, 3) and low:  # x2 >= x1, y2 >= y1
                mask = mask.clone()
                mask[torch.as_tensor(self.loc[:low], device=device)] = False
        if "L" in letters and machine.grammar.inside and region is not None:
            run = len(text) - len(text.rstrip("L"))  # locations alternate x, y from a run's start
            low, high = (region[0], region[2]) if run % 2 == 0 else (region[1], region[3])
            outside = self.loc[:low] + self.loc[high + 1:]
            if outside:
                mask = mask.clone()
                mask[torch.as_tensor(outside, device=device)] = False
        return mask

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        vocab, rows = scores.shape[-1], input_ids.shape[0]
        masks = []
        for r, row in enumerate(input_ids.tolist()):
            prompt = r * len(self.machines) // rows  # beams follow their prompt
            machine = self.machines[prompt]
            row = tuple(row)
            state = None if machine is None else machine.state(row)
            masks.append(torch.ones(vocab, dtype=torch.bool, device=scores.device) if state is None
                         else self.allowed(machine, state, row, vocab, scores.device, self.regions[prompt]))
        allowed = torch.stack(masks)
        possible = (torch.isfinite(scores) & allowed).any(-1)
        before = self._before
        if before is not None and before.shape == scores.shape and not bool(possible.all()):
            # what the n-gram rule banned, the grammar needs: those tokens' scores from before it
            back = ~possible & (torch.isfinite(before) & allowed).any(-1)
            scores = torch.where(back[:, None] & allowed, before, scores)
            possible = possible | back
        # a row with nothing allowed possible stays as it is
        return scores.masked_fill(~allowed & possible[:, None], -float("inf"))


def _within(tokens: int | None, left: int) -> bool:
    return tokens is not None and tokens <= left


@functools.lru_cache(maxsize=8)
def _letters(tokenizer, location_ids: tuple) -> dict[int, str]:
    """Token id -> its letter (tokens of no letter are never allowed: ``<s>``, ``<pad>``, task tokens,
    ordinary tokens with ``<``)."""
    letter_of = {i: "L" for i in location_ids}
    letter_of[tokenizer.eos_token_id] = "E"
    vocab = tokenizer.get_vocab()
    for letter, mark in _MARKS.items():
        if mark in vocab:
            letter_of[vocab[mark]] = letter
    added = set(tokenizer.all_special_ids) | {int(i) for i in tokenizer.added_tokens_decoder}
    for token, i in vocab.items():  # byte-level BPE writes '<' as itself
        if i not in added and i not in letter_of and "<" not in token:
            letter_of[i] = "T"
    return letter_of


def ClosedSetLabelsLogitsProcessor(tokenizer, classes, location_ids, locations: int = 4,
                                   max_new_tokens: int | None = None) -> GrammarLogitsProcessor:
    """Items ``label (<loc> x locations)+`` whose every label is one of ``classes``, then ``</s>``
    (boxes: 4 locations, ordered, several per label; quads: 8, one per label): a
    :class:`GrammarLogitsProcessor`."""
    n = int(locations)  # several boxes may share a label; a quad is one text line's
    grammar = Grammar("(T+(L{4})+)*E" if n == 4 else f"(T+L{{{n}}})*E", boxes=n == 4, item_locations=n)
    return GrammarLogitsProcessor(tokenizer, grammar, location_ids, classes=classes, max_new_tokens=max_new_tokens)


def token_letters(ids, tokenizer, location_ids) -> str:
    """One letter per token of ``ids`` (``?``: a token of no letter)."""
    letter_of = _letters(tokenizer, tuple(int(i) for i in location_ids))
    return "".join(letter_of.get(int(i), "?") for i in ids)


def _output_ids(ids, tokenizer) -> list[int]:
    """A generated sequence's tokens after ``<s>``, padding left out."""
    ids = [int(i) for i in ids]
    if tokenizer.bos_token_id in ids:
        ids = ids[ids.index(tokenizer.bos_token_id) + 1:]
    return [i for i in ids if i != tokenizer.pad_token_id]


def output_letters(ids, tokenizer, location_ids) -> str:
    """The letters of a generated sequence's tokens after ``<s>``, padding left out."""
    return token_letters(_output_ids(ids, tokenizer), tokenizer, location_ids)


def _ordered(letters: str, bins: list) -> bool:
    """Whether every box of ``letters`` (runs of L not after P or S, in fours) has x2 >= x1, y2 >= y1."""
    for run in regex.finditer(r"L+", letters):
        if letters[run.start() - 1:run.start()] in ("P", "S"):
            continue
        for k in range(run.start(), run.end() - 3, 4):
            if bins[k + 2] < bins[k] or bins[k + 3] < bins[k + 1]:
                return False
    return True


def count_malformed(ids, grammar: Grammar, tokenizer, location_ids) -> tuple[int, int, bool]:
    """``(items, malformed items, whole output well-formed)`` of a generated sequence, read on its
    tokens: items begin where a label (a run of text tokens) or a ``<poly>`` begins, or every four
    location tokens in an output of boxes without labels; an item is well-formed when it alone,
    then ``</s>``, is a well-formed output (and its boxes are ordered)."""
    ids = _output_ids(ids, tokenizer)
    letters = token_letters(ids, tokenizer, location_ids)
    bin_of = {int(t): k for k, t in enumerate(location_ids)}
    bins = [bin_of.get(i, -1) for i in ids]
    pattern = regex.compile(grammar.pattern)
    whole = bool(pattern.fullmatch(letters)) and (not grammar.boxes or _ordered(letters, bins))
    body = letters[:-1] if letters.endswith("E") else letters
    if "T" in grammar.pattern or "P" in grammar.pattern:
        starts = [0] + [m.start() for m in regex.finditer(r"(?<=[^T])[TP]", body) if m.start() > 0]
    else:
        starts = list(range(0, len(body), 4))
    chunks = [(a, b) for a, b in zip(starts, starts[1:] + [len(body)]) if b > a]
    bad = sum(not pattern.fullmatch(body[a:b] + "E") or (grammar.boxes and not _ordered(body[a:b], bins[a:b]))
              for a, b in chunks)
    return len(chunks), bad, whole
