"""Capability checks, dtype "auto", and the fallbacks on a CPU without native bf16.

The subprocess test runs with ``ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2``: on an AVX-512
machine oneDNN then refuses its bf16 kernels exactly as on an AVX2-only CPU (the crash of
``linear`` under bf16 autocast that the probe now avoids); on an AVX2 machine it is the machine itself."""
import json
import os
import subprocess
import sys
import warnings

import pytest
import torch

from florence import hardware


def test_probe_agrees_with_a_real_call():
    """Each dtype the probe reports runs through oneDNN's linear; bf16 is reported only where
    oneDNN's bf16 kernels run."""
    for dtype in hardware.onednn_dtypes():
        x, w = torch.randn(3, 8, dtype=dtype), torch.randn(4, 8, dtype=dtype)
        y = torch.ops.mkldnn._linear_pointwise(x, w, None, "none", [None], "")
        torch.testing.assert_close(y.float(), (x.float() @ w.float().t()), rtol=2e-2, atol=2e-2)
    if torch.bfloat16 not in hardware.onednn_dtypes():
        with pytest.raises(RuntimeError):
            torch.ops.mkldnn._reorder_linear_weight(torch.randn(4, 8, dtype=torch.bfloat16), None)
    assert torch.float32 in hardware.onednn_dtypes() or not torch.backends.mkldnn.is_available()


def test_limited_lowers_capabilities_and_restores_them():
    before = hardware.onednn_dtypes()
    with hardware.limited(onednn=[torch.float32, torch.bfloat16]):
        assert hardware.onednn_dtypes() == before  # limits never add what the machine lacks
        with hardware.limited():
            assert hardware.onednn_dtypes() == frozenset() and not hardware.native_bf16("cpu")
    assert hardware.onednn_dtypes() == before


def test_auto_dtype_follows_native_bf16(monkeypatch):
    monkeypatch.setattr(hardware, "_reported", set())  # the choice is reported once per process
    logged = []
    with hardware.limited(onednn=[torch.float32]):  # an AVX2-only CPU
        assert hardware.resolve_dtype("auto", "cpu", log=logged.append) is torch.float32
        assert hardware.resolve_dtype("auto", "cpu", training=True, log=logged.append) is torch.float32
    assert any("auto' -> float32 on cpu" in m for m in logged)
    expected = torch.bfloat16 if hardware.native_bf16("cpu") else torch.float32
    assert hardware.resolve_dtype("auto", torch.device("cpu")) is expected
    assert hardware.resolve_dtype(None) is None and hardware.resolve_dtype("fp32") is torch.float32
    assert hardware.resolve_dtype(torch.float16) is torch.float16
    with pytest.raises(ValueError, match="dtype must be 'auto'"):
        hardware.resolve_dtype("float33")


def test_explicit_bf16_without_native_support_warns_once(monkeypatch):
    monkeypatch.setattr(hardware, "_reported", set())
    with hardware.limited(onednn=[torch.float32]), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert hardware.resolve_dtype("bf16", "cpu") is torch.bfloat16
        assert hardware.resolve_dtype(torch.bfloat16, "cpu") is torch.bfloat16
    slow = [w for w in caught if "without native bf16" in str(w.message)]
    assert len(slow) == 1 and "much slower than float32" in str(slow[0].message)


def test_fast_linear_falls_back_under_each_level():
    """The issue's reproduction: a FastLinear under bf16 autocast (training) and in pure bf16
    (inference, packed weights) at every level, equal to F.linear where oneDNN is off."""
    from florence.accel.linear import use_fast_linear_

    torch.manual_seed(0)
    m = use_fast_linear_(torch.nn.Sequential(torch.nn.Linear(64, 64)))
    x = torch.randn(4, 64)
    for level in ([], [torch.float32], [torch.float32, torch.bfloat16]):
        with hardware.limited(onednn=level):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                y = m(x.requires_grad_())
            y.float().sum().backward()
            assert y.dtype == torch.bfloat16 and x.grad.shape == x.shape
            x.grad = None
            with torch.no_grad():
                got = m.bfloat16()(x.detach().bfloat16())
                m.float()
            ref = torch.nn.functional.linear(x.detach().bfloat16(), m[0].weight.bfloat16(), m[0].bias.bfloat16())
            if torch.bfloat16 not in hardware.onednn_dtypes():
                assert torch.equal(got, ref)
            else:
                torch.testing.assert_close(got.float(), ref.float(), rtol=2e-2, atol=2e-2)


def test_linear_calls_onednn_only_within_its_row_limit(monkeypatch):
    """oneDNN where this machine's policy says it wins (every size on AVX-512, decoding-sized
    matmuls on AVX2), ``F.linear`` above the limit and at every size once oneDNN is off."""
    from florence.accel import linear as kernels

    calls = []
    real = kernels._lp
    monkeypatch.setattr(kernels, "_lp", lambda *a, **k: calls.append(a[0].shape) or real(*a, **k))
    w, b = torch.randn(16, 8), torch.randn(16)
    limit = hardware.onednn_max_rows(torch.float32)
    assert limit == 0 or torch.float32 in hardware.onednn_dtypes()
    with torch.no_grad():
        for rows in (1, 128, 129, 4096):
            x = torch.randn(rows, 8)
            y = kernels.linear(x, w, b)
            torch.testing.assert_close(y, torch.nn.functional.linear(x, w, b))
            assert bool(calls) == (rows <= limit), (rows, limit)
            calls.clear()
            with hardware.limited():
                assert torch.equal(kernels.linear(x, w, b), torch.nn.functional.linear(x, w, b)) and not calls


CHILD = r"""
import json, torch, warnings
warnings.simplefilter("ignore")
from florence import Florence2Config, Florence2ForConditionalGeneration, hardware
from florence.accel.linear import use_fast_linear_
out = {"capability": hardware.cpu_capability(), "onednn": sorted(str(d) for d in hardware.onednn_dtypes()),
       "auto": str(hardware.resolve_dtype("auto", "cpu")), "rows": hardware.onednn_max_rows(torch.float32)}
m = use_fast_linear_(torch.nn.Sequential(torch.nn.Linear(64, 64)))
with torch.autocast("cpu", dtype=torch.bfloat16):
    m(torch.randn(4, 64, requires_grad=True)).float().sum().backward()
with torch.no_grad():
    m.bfloat16()(torch.randn(4, 64).bfloat16())
torch.manual_seed(0)
model = Florence2ForConditionalGeneration(Florence2Config.preset("tiny", vocab_size=300))
pixels, ids = torch.randn(2, 3, 64, 64), torch.tensor([[0, 5, 6, 2], [0, 7, 2, 1]])
mask = (ids != 1).long()
with torch.autocast("cpu", dtype=torch.bfloat16):  # a bf16 autocast training step
    loss = model(pixels, ids, mask, labels=torch.tensor([[0, 9, 2], [0, 8, 2]])).loss
loss.backward()
model = model.to(torch.bfloat16).eval()  # pure bf16 inference, beams
seq = model.generate(pixels.bfloat16(), ids, mask, num_beams=2, max_new_tokens=5)
out.update(loss=loss.item(), shape=list(seq.shape))
print(json.dumps(out))
"""


def test_bf16_runs_where_onednn_refuses_bf16():
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
    run = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["capability"] == "AVX2"
    assert out["onednn"] == ["torch.float32"]  # oneDNN's bf16 kernels are refused: the probe saw it
    assert out["auto"] == "torch.float32" and out["rows"] == 128  # oneDNN only for decoding-sized fp32 matmuls
    assert out["loss"] > 0 and out["shape"][0] == 2
