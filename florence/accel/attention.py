"""Attention for BART's decoding steps: a cross-attention cache shared by the beams of an input, and
an attention function for transformers' attention interface that reads it.

transformers' generate projects the encoder output once per beam and copies those rows at every
beam-search step (``reorder_cache``). :class:`SharedCrossAttentionCache` keeps one row per input;
:func:`attention` reads a group of query rows (the input's beams) against it. The same function
computes bf16 decoding steps with a float32 softmax in two matmuls, where torch's CPU flash kernel
is several times slower for one query row.
"""
from __future__ import annotations

import torch
from transformers import DynamicCache

__all__ = ["ATTENTION", "SharedCrossAttentionCache", "attention", "register_attention"]

ATTENTION = "florence_cpu"  # the name florence registers with transformers' attention interfaces


class SharedCrossAttentionCache(DynamicCache):
    """Cross-attention keys and values with one row per input, shared by all of its beams (or
    returned sequences). Reordering is a no-op: every beam of an input reads the same row."""

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        pass

    def batch_repeat_interleave(self, repeats: int) -> None:
        pass  # the copies would be equal: sharing one row is the point

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        raise NotImplementedError("shared cross-attention rows cannot be selected per sequence")


def attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling: float | None = None,
              **kwargs):
    """A transformers attention function: transformers' own SDPA, with two CPU exceptions.

    - Keys and values with fewer rows than the queries: cross-attention K/V shared by the ``group``
      beams (or returned sequences) of each input (:class:`SharedCrossAttentionCache`). The group's
      queries become extra query rows of one attention per input.
    - A few bf16 query rows that need no causal mask (decoding steps): two matmuls with a float32
      softmax, the precision of torch's flash kernel at a fraction of its cost for so few rows."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    group = query.shape[0] // key.shape[0]
    if group > 1:
        B, heads, q_len, dim = key.shape[0], query.shape[1], query.shape[2], query.shape[3]
        query = query.view(B, group, heads, q_len, dim).transpose(1, 2).reshape(B, heads, group * q_len, dim)
        if attention_mask is not None:  # the rows of a group share the input's mask
            attention_mask = attention_mask[::group]
            attention_mask = attention_mask.repeat(1, 1, group, 1) if attention_mask.shape[2] > 1 else attention_mask
        out, _ = attention(module, query, key, value, attention_mask, dropout, scaling, **kwargs)
        return out.view(B, group, q_len, heads, dim).reshape(B * group, q_len, heads, dim), None
    short = query.shape[2] == 1 or (query.shape[2] <= 16 and not getattr(module, "is_causal", True))
    if (not short or query.dtype != torch.bfloat16 or query.device.type != "cpu"
            or (dropout and module.training) or kwargs.get("output_attentions")):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    scale = query.shape[-1] ** -0.5 if scaling is None else scaling
    # float32 scores and softmax, bf16 probabilities times bf16 values: the precision of the flash kernel
    scores = torch.matmul(query.float(), key.float().transpose(2, 3)) * scale  # (B, heads, q, kv)
    if attention_mask is not None:
        scores = (scores.masked_fill(~attention_mask, float("-inf")) if attention_mask.dtype == torch.bool
                  else scores + attention_mask)
    probs = scores.softmax(-1).to(value.dtype)
    return torch.matmul(probs, value).transpose(1, 2).contiguous(), None  # (B, q, heads, head_dim)


def register_attention():
    """Make :func:`attention` available to transformers models as ``attn_implementation="florence_cpu"``
    (masks as for SDPA)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(ATTENTION, attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION, sdpa_mask)
