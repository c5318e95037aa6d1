"""Generation helpers: n-gram blocking that leaves location tokens alone, a cross-attention cache
shared by the beams of an input, and cheaper equivalents of three of transformers' logits processors.

The published generation settings use ``no_repeat_ngram_size=3`` over all tokens, which also
forbids repeating any three location tokens: two objects sharing a corner or an edge
(``<loc_10><loc_20><loc_300>`` twice) cannot both be emitted, and the model is pushed to a wrong
box instead. :class:`TextNoRepeatNGramLogitsProcessor` blocks repeated n-grams of text only: an
n-gram that contains a location token is never blocked.
"""
from __future__ import annotations

import inspect

import torch
from transformers import DynamicCache, LogitsProcessor, LogitsProcessorList
from transformers.generation.logits_process import (MinLengthLogitsProcessor, MinNewTokensLengthLogitsProcessor,
                                                    SuppressTokensLogitsProcessor)

__all__ = ["TextNoRepeatNGramLogitsProcessor", "SharedCrossAttentionCache", "fast_logits_processors"]


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


class SharedCrossAttentionCache(DynamicCache):
    """Cross-attention keys and values with one row per input, shared by all of its beams (or
    returned sequences); ``florence.models.kernels.attention`` reads a group of query rows against one
    row. transformers' generate otherwise projects the encoder output once per beam and copies those
    rows at every beam-search step (``reorder_cache``): for 3 beams over 591 encoder tokens, 3x the
    memory and ~1/3 of a base model's fp32 decoding time. Reordering is a no-op here: every beam of
    an input reads the same row."""

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        pass

    def batch_repeat_interleave(self, repeats: int) -> None:
        pass  # the copies would be equal: sharing one row is the point

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        raise NotImplementedError("shared cross-attention rows cannot be selected per sequence")


def _fill(scores: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """``scores`` with the columns ``ids`` set to -inf (ids outside the vocabulary ignored)."""
    ids = ids.to(scores.device).reshape(-1)
    return scores.index_fill(1, ids[(ids >= 0) & (ids < scores.shape[-1])], -float("inf"))


class _SuppressTokens(SuppressTokensLogitsProcessor):
    """transformers' processor, same scores, without an ``isin`` over the vocabulary per step."""

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        return _fill(scores, self.suppress_tokens)


class _MinLength(MinLengthLogitsProcessor):
    """transformers' processor, same scores, without an ``isin`` over the vocabulary per step."""

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        return _fill(scores, self.eos_token_id) if input_ids.shape[-1] < self.min_length else scores


class _MinNewTokens(MinNewTokensLengthLogitsProcessor):
    """transformers' processor, same scores, without an ``isin`` over the vocabulary per step."""

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        if input_ids.shape[-1] - self.prompt_length_to_skip >= self.min_new_tokens:
            return scores
        return _fill(scores, self.eos_token_id)


class _ProcessorList(LogitsProcessorList):
    """transformers' list of processors, with each processor's signature looked up once instead of
    at every step (``inspect.signature``: ~0.25 ms per step for five processors, measured)."""

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
        plain = self.__dict__.get("_plain")
        if plain is None or plain[0] != [id(p) for p in self]:
            plain = self.__dict__["_plain"] = ([id(p) for p in self], all(
                len(inspect.signature(p.__call__).parameters) <= 2 for p in self))
        if kwargs or not plain[1]:
            return super().__call__(input_ids, scores, **kwargs)
        for processor in self:
            scores = processor(input_ids, scores)
        return scores


_FAST_PROCESSORS = {SuppressTokensLogitsProcessor: _SuppressTokens, MinLengthLogitsProcessor: _MinLength,
                    MinNewTokensLengthLogitsProcessor: _MinNewTokens}


def fast_logits_processors(processors: LogitsProcessorList) -> LogitsProcessorList:
    """The same processors, in the same order, in a list that looks their signatures up once, with
    the ones transformers builds for ``suppress_tokens``, ``min_length`` and ``min_new_tokens``
    turned into subclasses that compute the same scores with one ``index_fill`` (transformers'
    build a vocabulary-wide ``isin`` mask at every step: ~0.5 ms per step for ``suppress_tokens``,
    ~0.15 ms for each of the others at 51k tokens, measured)."""
    for p in processors:
        fast = _FAST_PROCESSORS.get(type(p))
        if fast is not None:
            p.__class__ = fast
    return _ProcessorList(processors)
