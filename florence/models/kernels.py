"""CPU kernels that make Florence-2 fast on x86 CPUs without changing its numerics.

``nn.Linear`` on CPU runs through MKL's sgemm/sgemv. On AVX-512 CPUs MKL reaches about half of the
fp32 matmul speed oneDNN reaches on the same shapes (README "Performance"; on AVX2-only CPUs MKL is
the faster one above decoding-sized matmuls, so only those go to oneDNN there), its fp32 GEMV
with 2-3 rows (beam search) is 3-4x slower than with one row, and bf16 GEMV with plain weights
(one decoding step) is ~3x slower than oneDNN with pre-packed weights. :class:`FastLinear` is an
``nn.Linear`` (same parameters, state-dict keys and ``isinstance``) whose forward calls oneDNN's
inner product (``torch.ops.mkldnn._linear_pointwise``, the kernel torch's own inductor emits for
CPU linears), with a backward of the same kernels, and falls back to ``F.linear`` wherever that
kernel does not apply or does not win: other devices, tensor subclasses, dtypes oneDNN does not run
on this machine and sizes where the plain op is faster here (:func:`florence.hardware.onednn_max_rows`:
every size with AVX-512; only decoding-sized matmuls of float32 on AVX2-only CPUs, which have no
oneDNN bf16; nothing in torch builds without oneDNN or with ``FLORENCE_ONEDNN=0``).
Outputs equal ``F.linear``'s up to float rounding (fp32: ~1e-6 relative; different summation
order), so fp32 generation gives the same token ids.

Example::

    >>> use_fast_linear_(model)          # every nn.Linear inside becomes a FastLinear, in place
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import hardware

__all__ = ["FastLinear", "use_fast_linear_", "linear", "release_packed_weights_"]

# Weight-gradient GEMMs reduce over the token dimension (73728 rows in DaViT's first stage for two
# 768 px images): oneDNN's inner product runs them fastest summed over chunks of this many rows
# (measured fp32: 70-150 GFLOP/s vs MKL's ~65 and unchunked oneDNN's 45-130).
_GRAD_WEIGHT_CHUNK = 2048
# bf16 decoding steps multiply a handful of rows by each weight: oneDNN is ~3x faster with the
# weight reordered once into its blocked layout (kept as a cache next to the parameter).
_PACK_MAX_ROWS = 16


def _lp(x, w, b=None, act="none"):
    return torch.ops.mkldnn._linear_pointwise(x, w, b, act, [None], "" if act == "none" else "none")


class _OneDNNLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, act):
        pre = _lp(x, weight, bias)
        y = F.gelu(pre) if act == "gelu" else pre
        ctx.save_for_backward(x, weight, pre if act == "gelu" else None)
        ctx.act, ctx.has_bias = act, bias is not None
        return y

    @staticmethod
    def backward(ctx, grad):
        x, weight, pre = ctx.saved_tensors
        if ctx.act == "gelu":
            grad = torch.ops.aten.gelu_backward(grad, pre)
        g = grad.reshape(-1, grad.shape[-1]).contiguous()  # (M, out)
        gx = gw = gb = None
        fp32 = g.dtype == torch.float32
        if ctx.needs_input_grad[0]:  # (M, in) = g @ W, as a linear with the transposed weight
            gx = (_lp(g, weight.t()) if fp32 else g @ weight).view(*grad.shape[:-1], weight.shape[1])
        if ctx.needs_input_grad[1]:  # (out, in) = g^T @ x
            x2 = x.reshape(-1, x.shape[-1]).contiguous()  # a transposed x (channel attention) costs oneDNN 100x
            if fp32:
                gw = sum(_lp(g[i:i + _GRAD_WEIGHT_CHUNK].t(), x2[i:i + _GRAD_WEIGHT_CHUNK].t())
                         for i in range(0, g.shape[0], _GRAD_WEIGHT_CHUNK))
            else:
                gw = g.t() @ x2
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = g.sum(0)
        return gx, gw, gb, None


def _packed(module, weight):
    """oneDNN's blocked copy of ``weight``, rebuilt when the parameter changes."""
    key = (weight.data_ptr(), weight._version, weight.dtype)
    cache = module.__dict__.get("_packed_weight")
    if cache is None or cache[0] != key:
        cache = (key, torch.ops.mkldnn._reorder_linear_weight(weight.detach(), None))
        module.__dict__["_packed_weight"] = cache
    return cache[1]


def release_packed_weights_(model: nn.Module, rows: int | None = None) -> None:
    """Drop the packed weight copies cached under ``model`` (a second copy of every decoder weight
    and the LM head: 0.18 GB for a base model in bf16). With ``rows``, only when a call with that many
    rows per linear is about to run, i.e. one that never reads them (more than ``_PACK_MAX_ROWS``):
    a large batch then does not carry the small batches' copies; the next small batch repacks."""
    if rows is not None and rows <= _PACK_MAX_ROWS:
        return
    for m in model.modules():
        m.__dict__.pop("_packed_weight", None)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, act: str = "none",
           module: nn.Module | None = None, residual: torch.Tensor | None = None) -> torch.Tensor:
    """``act(x @ weight.T + bias) + residual`` with ``act`` in ``{"none", "gelu"}`` (exact erf GELU)
    and ``residual`` optional, through oneDNN where it applies (the residual add fused into the
    matmul's output pass in inference) and ``F.linear`` elsewhere. Under CPU autocast it computes in
    the autocast dtype, as ``F.linear`` does. ``module`` lets bf16 inference keep a packed weight."""
    autocast = torch.is_autocast_enabled("cpu")
    if autocast and x.device.type == "cpu" and x.is_floating_point():
        dt = torch.get_autocast_dtype("cpu")
        x, weight = x.to(dt), weight.to(dt)
        bias = bias.to(dt) if bias is not None else None
    if residual is not None and (act != "none" or torch.is_grad_enabled() or residual.dtype != x.dtype
                                 or residual.shape[:-1] != x.shape[:-1]):
        return linear(x, weight, bias, act, module) + residual  # e.g. a float32 residual under autocast
    usable = (x.device.type == "cpu" and weight.dtype == x.dtype and (bias is None or bias.dtype == x.dtype)
              and type(x) is torch.Tensor and type(weight) in (torch.Tensor, nn.Parameter)
              and 0 < x.numel() <= hardware.onednn_max_rows(x.dtype) * x.shape[-1])
    if not usable:
        y = F.linear(x, weight, bias)
        y = F.gelu(y) if act == "gelu" else y
        return y if residual is None else y + residual
    if autocast:  # inputs already cast: the ops inside run as they are (the switch costs ~10 us, so only here)
        with torch.autocast("cpu", enabled=False):
            return _onednn(x, weight, bias, act, module, residual)
    return _onednn(x, weight, bias, act, module, residual)


def _onednn(x, weight, bias, act, module, residual):
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad
                                    or (bias is not None and bias.requires_grad)):
        return _OneDNNLinear.apply(x, weight, bias, act)
    rows = x.numel() // x.shape[-1]
    if module is not None and x.dtype == torch.bfloat16 and rows <= _PACK_MAX_ROWS:
        weight = _packed(module, weight)
    if residual is not None:
        return torch.ops.mkldnn._linear_pointwise.binary(x, residual, weight, bias, "add")
    return _lp(x, weight, bias, act)


class FastLinear(nn.Linear):
    """``nn.Linear`` computed by :func:`linear` (oneDNN on CPU). Same parameters and state dict."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias, module=self)


def use_fast_linear_(model: nn.Module) -> nn.Module:
    """Turn every plain ``nn.Linear`` in ``model`` into a :class:`FastLinear`, in place (the class
    changes, parameters and hooks stay). Subclasses (e.g. LoRA layers) are left alone."""
    for m in model.modules():
        if type(m) is nn.Linear:
            m.__class__ = FastLinear
    return model


# ---------------------------------------------------------------------------------------------
# attention
# ---------------------------------------------------------------------------------------------
ATTENTION = "florence_cpu"  # the name florence registers with transformers' attention interfaces


def attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling: float | None = None,
              **kwargs):
    """A transformers attention function: transformers' own SDPA, with two CPU exceptions.

    - Keys and values with fewer rows than the queries: cross-attention K/V shared by the ``group``
      beams (or returned sequences) of each input (:class:`SharedCrossAttentionCache`). The group's
      queries become extra query rows of one attention per input.
    - A few bf16 query rows that need no causal mask (decoding steps): two matmuls with a float32
      softmax, where torch's flash kernel costs 5-9x more (measured: cross-attention over 591 encoder
      tokens, 598 vs 133 us; 3 beams 1835 vs 364 us)."""
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
