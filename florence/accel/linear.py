"""oneDNN linears: :class:`FastLinear` is an ``nn.Linear`` (same parameters, state-dict keys and
``isinstance``) whose forward calls oneDNN's inner product (``torch.ops.mkldnn._linear_pointwise``,
the kernel torch's inductor emits for CPU linears), with a backward of the same kernels.

Why: on CPU ``nn.Linear`` runs MKL's sgemm/sgemv. With AVX-512 oneDNN is much faster on Florence-2's
shapes, and bf16 GEMV (one decoding step) is several times faster with the weight reordered once
into oneDNN's blocked layout (kept as a cache next to the parameter); on AVX2-only CPUs MKL wins
above decoding-sized matmuls (benchmarks/vs_transformers.py prints the kernel comparison). Where
the kernel does not apply or does not win, :func:`linear` calls ``F.linear``: other devices, tensor
subclasses, dtypes oneDNN does not run on this machine, and the sizes
:func:`florence.hardware.onednn_max_rows` rules out (``FLORENCE_ONEDNN=0`` turns it off). Outputs
equal ``F.linear``'s up to float rounding (a different summation order), so fp32 generation gives
the same token ids (tests/models/test_accel.py).

Example::

    >>> use_fast_linear_(model)          # every nn.Linear inside is replaced by a FastLinear, in place
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import hardware
from .replace import replace_modules, take_over

__all__ = ["FastLinear", "use_fast_linear_", "use_plain_linear_", "linear", "release_packed_weights_"]

# Weight-gradient GEMMs reduce over the token dimension (tens of thousands of rows in DaViT's first
# stage): oneDNN's inner product runs them fastest summed over chunks of this many rows.
_GRAD_WEIGHT_CHUNK = 2048
# bf16 decoding steps multiply a handful of rows by each weight: oneDNN is fastest with the weight
# reordered once into its blocked layout (kept as a cache next to the parameter).
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
    and the LM head). With ``rows``, only when a call with that many
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
    """Replace every plain ``nn.Linear`` in ``model`` by a :class:`FastLinear` holding its parameters
    and hooks (:func:`~florence.accel.replace.replace_modules`). Subclasses (e.g. LoRA layers) are
    left alone; the linears inside them are replaced."""
    replace_modules(model, {nn.Linear: lambda m: take_over(m, FastLinear)})
    return model


def use_plain_linear_(model: nn.Module) -> nn.Module:
    """Undo :func:`use_fast_linear_`: every :class:`FastLinear` is an ``nn.Linear`` again, packed
    weight copies dropped."""
    release_packed_weights_(model)
    replace_modules(model, {FastLinear: lambda m: take_over(m, nn.Linear)})
    return model
