"""DaViT (timm's Florence-2 variant) run channels-last: :func:`davit_features` is timm's ``DaVit``
``forward_features`` on the same modules and parameters, keeping activations as contiguous
(B, H, W, C) from the stem to the last stage. :func:`florence.accel.apply` sets it as the tower's
``fast_features``, which :meth:`florence.models.tower.DaViT.features` calls on CPU.

timm's blocks hold NCHW tensors between blocks and transpose to tokens (B, H*W, C) and back four
times per block; the depthwise convolutions then run on NCHW. Here tokens and image are the same
memory: a depthwise convolution reads the (B, H, W, C) tensor as a channels-last NCHW view (oneDNN's
preferred layout, no copy), LayerNorm and the linears read it as tokens, and only the window
partition copies. Where the MLP is made of plain :class:`~florence.accel.linear.FastLinear` layers,
fc1 and GELU run as one oneDNN call, and in inference fc2 takes the residual add into its output
pass and the MLP runs in row chunks that stay in cache. Outputs equal timm's up to float rounding
(tests/models/test_accel.py).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint

from .linear import FastLinear, linear

__all__ = ["davit_features"]


def _conv_nhwc(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv`` applied to (B, H, W, C) through a channels-last view; returns (B, H', W', C')."""
    return conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


def _norm(norm: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    """timm's LayerNorm2d (or nn.LayerNorm) over the channels of a (B, H, W, C) tensor."""
    return F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)


def _contiguous(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.contiguous_format)


# Rows per chunk of the MLP in inference: a chunk's 4x-wide hidden activations stay in cache
# (DaViT's first stage has 36864 tokens at 768 px).
_MLP_CHUNK = 4096


def _plain_mlp(mlp: nn.Module) -> bool:
    """fc1 -> exact GELU -> fc2 with FastLinears (not e.g. LoRA-wrapped): fusable."""
    return (type(mlp.fc1) is FastLinear and type(mlp.fc2) is FastLinear and isinstance(mlp.act, nn.GELU)
            and mlp.act.approximate == "none" and isinstance(mlp.norm, nn.Identity))


def _mlp_residual(blk: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x + drop_path2(mlp(norm2(x)))``; in inference chunk by chunk with GELU and the residual add
    fused into the linears."""
    mlp = blk.mlp
    if blk.training or torch.is_grad_enabled() or not _plain_mlp(mlp):
        if _plain_mlp(mlp):
            h = mlp.drop1(linear(_norm(blk.norm2, x), mlp.fc1.weight, mlp.fc1.bias, act="gelu", module=mlp.fc1))
            return x + blk.drop_path2(mlp.drop2(mlp.fc2(h)))
        return x + blk.drop_path2(mlp(_norm(blk.norm2, x)))
    rows = x.reshape(-1, x.shape[-1])  # (B*H*W, C)
    out = torch.empty_like(rows)
    for i in range(0, rows.shape[0], _MLP_CHUNK):
        r = rows[i:i + _MLP_CHUNK]
        h = linear(_norm(blk.norm2, r), mlp.fc1.weight, mlp.fc1.bias, act="gelu", module=mlp.fc1)
        out[i:i + _MLP_CHUNK] = linear(h, mlp.fc2.weight, mlp.fc2.bias, module=mlp.fc2, residual=r)
    return out.view(x.shape)


def _window_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """SDPA, except when training in bf16: there the backward of torch's CPU flash kernel costs more
    than two matmuls and a softmax (which computes in float32 inside), forward and backward."""
    if not (torch.is_grad_enabled() and q.requires_grad and q.dtype == torch.bfloat16):
        return F.scaled_dot_product_attention(q, k, v)
    scores = torch.matmul(q * q.shape[-1] ** -0.5, k.transpose(-1, -2))  # (B * windows, heads, N, N)
    return torch.matmul(scores.softmax(-1), v)


def _spatial_block(blk: nn.Module, x: torch.Tensor) -> torch.Tensor:
    B, H, W, C = x.shape
    ws_h, ws_w = blk.window_size
    attn = blk.attn
    x = _contiguous(x + _conv_nhwc(blk.cpe1.proj, x))
    y = _norm(blk.norm1, x)
    pad_b, pad_r = (ws_h - H % ws_h) % ws_h, (ws_w - W % ws_w) % ws_w
    y = F.pad(y, (0, 0, 0, pad_r, 0, pad_b))  # windows need no padding at 768 px
    Hp, Wp = H + pad_b, W + pad_r
    y = y.view(B, Hp // ws_h, ws_h, Wp // ws_w, ws_w, C).transpose(2, 3)  # (B, nH, nW, ws, ws, C)
    y = y.reshape(-1, ws_h * ws_w, C)  # (B * windows, N, C): the one copy
    n_win, N = y.shape[:2]
    qkv = attn.qkv(y).view(n_win, N, 3, attn.num_heads, C // attn.num_heads).permute(2, 0, 3, 1, 4)
    y = _window_attention(*qkv.unbind(0))  # (B * windows, heads, N, head_dim)
    y = attn.proj(y.transpose(1, 2).reshape(n_win, N, C))
    y = y.view(B, Hp // ws_h, Wp // ws_w, ws_h, ws_w, C).transpose(2, 3)  # (B, nH, ws, nW, ws, C)
    if pad_b or pad_r:
        x = x + blk.drop_path1(y.reshape(B, Hp, Wp, C)[:, :H, :W])
    else:  # add the windows straight from their layout: no separate window-reverse copy
        x = (x.view(B, H // ws_h, ws_h, W // ws_w, ws_w, C) + blk.drop_path1(y)).view(B, H, W, C)
    x = _contiguous(x + _conv_nhwc(blk.cpe2.proj, x))
    return _mlp_residual(blk, x)


def _channel_block(blk: nn.Module, x: torch.Tensor) -> torch.Tensor:
    B, H, W, C = x.shape
    N, attn = H * W, blk.attn
    x = _contiguous(x + _conv_nhwc(blk.cpe1.proj, x))
    y = _norm(blk.norm1, x).view(B, N, C)
    g = attn.groups
    qkv = attn.qkv(y).view(B, N, 3, g, C // g).permute(2, 0, 3, 1, 4)  # (3, B, groups, N, head_dim)
    q, k, v = qkv.unbind(0)
    scale = N ** -0.5 if attn.dynamic_scale else attn.head_dim ** -0.5
    a = ((q * scale).transpose(-1, -2) @ k).softmax(dim=-1)  # (B, groups, head_dim, head_dim)
    y = (a @ v.transpose(-1, -2)).permute(0, 3, 1, 2).reshape(B, N, C)  # (B, N, groups * head_dim)
    if type(attn.proj) is FastLinear and not blk.training:  # residual add fused in inference
        x = linear(y, attn.proj.weight, attn.proj.bias, module=attn.proj, residual=x.view(B, N, C)).view(B, H, W, C)
    else:
        x = x + blk.drop_path1(attn.proj(y).view(B, H, W, C))
    x = _contiguous(x + _conv_nhwc(blk.cpe2.proj, x))
    return _mlp_residual(blk, x)


def _unit(unit: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return _channel_block(unit.channel_block, _spatial_block(unit.spatial_block, x))


def davit_features(tower: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """``tower.forward_features(pixels)`` for timm's ``davit_*_fl`` towers, channels-last:
    (B, 3, H, W) -> (B, h, w, C4). Honours ``tower.set_grad_checkpointing()`` while training."""
    stem = tower.stem
    s = stem.stride
    x = F.pad(pixels, (0, (s[1] - pixels.shape[3] % s[1]) % s[1], 0, (s[0] - pixels.shape[2] % s[0]) % s[0]))
    x = _norm(stem.norm, _conv_nhwc(stem.conv, x.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1)))
    checkpointing = tower.grad_checkpointing and tower.training and torch.is_grad_enabled()
    for stage in tower.stages:
        if not isinstance(stage.downsample, nn.Identity):
            down = stage.downsample
            if down.even_k:
                raise NotImplementedError("even downsample kernels (not used by Florence-2's DaViT)")
            x = _contiguous(_conv_nhwc(down.conv, _norm(down.norm, x)))
        for unit in stage.blocks:
            if checkpointing or stage.grad_checkpointing and stage.training and torch.is_grad_enabled():
                x = torch.utils.checkpoint.checkpoint(_unit, unit, x, use_reentrant=False)
            else:
                x = _unit(unit, x)
    if not isinstance(tower.norm_pre, nn.Identity):
        x = tower.norm_pre(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    return x
