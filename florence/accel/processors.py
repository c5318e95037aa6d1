"""Cheaper equivalents of transformers' logits processors: the same scores, in the same order."""
from __future__ import annotations

import inspect

import torch
from transformers import LogitsProcessorList
from transformers.generation.logits_process import (MinLengthLogitsProcessor, MinNewTokensLengthLogitsProcessor,
                                                    SuppressTokensLogitsProcessor)

__all__ = ["fast_logits_processors"]


def _fill(scores: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """``scores`` with the columns ``ids`` set to -inf (ids outside the vocabulary ignored)."""
    ids = ids.to(scores.device).reshape(-1)
    return scores.index_fill(1, ids[(ids >= 0) & (ids < scores.shape[-1])], -float("inf"))


class _Cheaper:
    """One of transformers' processors, computed with one ``index_fill`` instead of an ``isin`` over
    the vocabulary per step; holds the processor (whose settings it reads) and leaves it as it is."""

    def __init__(self, processor):
        self.processor = processor

    def __repr__(self):
        return f"{type(self).__name__}({self.processor!r})"


class _SuppressTokens(_Cheaper):
    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        return _fill(scores, self.processor.suppress_tokens)


class _MinLength(_Cheaper):
    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        p = self.processor
        return _fill(scores, p.eos_token_id) if input_ids.shape[-1] < p.min_length else scores


class _MinNewTokens(_Cheaper):
    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        p = self.processor
        if input_ids.shape[-1] - p.prompt_length_to_skip >= p.min_new_tokens:
            return scores
        return _fill(scores, p.eos_token_id)


class _ProcessorList(LogitsProcessorList):
    """transformers' list of processors, with each processor's signature looked up once instead of
    at every step (``inspect.signature`` per processor and step)."""

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
    wrapped in equivalents that compute the same scores with one ``index_fill`` (transformers'
    build a vocabulary-wide ``isin`` mask at every step)."""
    return _ProcessorList(_FAST_PROCESSORS[type(p)](p) if type(p) in _FAST_PROCESSORS else p for p in processors)
