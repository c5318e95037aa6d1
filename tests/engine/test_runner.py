"""Training through mmengine's Runner: atomic checkpoints that load under weights_only, bf16 autocast,
tools/test.py's table (the resume after a real SIGKILL: test_kill.py)."""
import contextlib
import json
import os
from pathlib import Path

import pytest
import numpy as np
import torch
from mmengine.runner import Runner

import florence.engine  # noqa: F401
from florence import hardware
from florence.engine.runtime import AtomicLocalBackend, AutocastOptimWrapper

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def test_checkpoints_load_with_weights_only_and_test_tool_writes_table(make_config, tmp_path):
    cfg = make_config(max_iters=4, work_dir=str(tmp_path / "w"))
    Runner.from_cfg(cfg).train()
    ckpt = torch.load(tmp_path / "w" / "iter_4.pth", weights_only=True)  # torch's safe default, no allow-list
    assert {"state_dict", "optimizer", "param_schedulers", "message_hub", "rng_state"} <= set(ckpt)
    assert not [f for f in os.listdir(tmp_path / "w") if f.endswith(".tmp")]

    import importlib.util
    from pathlib import Path
    spec = importlib.util.spec_from_file_location("test_tool", Path(__file__).parents[2] / "tools" / "test.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    cfg_path = tmp_path / "cfg.py"
    cfg.dump(str(cfg_path))
    out = tmp_path / "metrics.json"
    rows = tool.main([str(cfg_path), str(tmp_path / "w" / "iter_4.pth"), "--out", str(out),
                      "--work-dir", str(tmp_path / "t")])
    table = json.loads(out.read_text())["table"]
    assert table == rows and {r["task"] for r in rows} >= {"<OD>", "<CAPTION>"}
    assert all(set(r) == {"task", "metric", "value", "samples", "invalid"} for r in rows)

    # florence export: the trained weights as a Florence-2 folder the pipeline loads
    from florence.cli import main as florence_main

    florence_main(["export", str(cfg_path), str(tmp_path / "w" / "iter_4.pth"), str(tmp_path / "export"),
                   "--layout", "microsoft"])
    import florence

    pipe = florence.pipeline(str(tmp_path / "export"))
    trained = ckpt["state_dict"]
    exported = pipe.model.state_dict()
    assert all(torch.equal(exported[k[len("model."):]], v) for k, v in trained.items() if k.startswith("model."))
    assert isinstance(pipe(np.zeros((32, 48, 3), np.uint8), "<OD>", max_new_tokens=8, num_beams=1)["<OD>"], dict)


def test_atomic_put_keeps_the_old_file_when_a_write_fails(tmp_path, monkeypatch):
    target = tmp_path / "latest.pth"
    backend = AtomicLocalBackend()
    backend.put(b"good checkpoint", target)

    def crash(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        backend.put(b"half written", target)
    assert target.read_bytes() == b"good checkpoint"
    assert os.listdir(tmp_path) == ["latest.pth"]  # no temporary file left behind


def test_the_atomic_backend_is_registered_where_it_is_needed_not_on_import():
    """Importing florence.engine changes nothing in mmengine; the checkpoint hook that writes through
    the backend (and the engine's jobs) register it, and a runner then resolves the name."""
    import subprocess
    import sys

    code = ("import florence.engine\nfrom mmengine.fileio.backends.registry_utils import backends\n"
            "print('atomic_local' in backends)\n"
            "florence.engine.CrashSafeCheckpointHook(interval=1)\nprint(backends['atomic_local'].__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "AtomicLocalBackend"]


def test_autocast_wrapper_runs_bf16_where_native_and_float32_elsewhere():
    model = torch.nn.Linear(4, 4)
    forced = AutocastOptimWrapper(optimizer=torch.optim.SGD(model.parameters(), lr=0.1), dtype="bfloat16")
    with forced.optim_context(model):
        assert model(torch.randn(2, 4)).dtype == torch.bfloat16
    assert model(torch.randn(2, 4)).dtype == torch.float32
    for level, expected in (([torch.float32], torch.float32), (None, None)):
        with contextlib.nullcontext() if level is None else hardware.limited(onednn=level):
            auto = AutocastOptimWrapper(optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
            with auto.optim_context(model):
                got = model(torch.randn(2, 4)).dtype
        native = torch.bfloat16 if hardware.native_bf16("cpu") else torch.float32
        assert got == (expected or native) and auto.cast_dtype == got
    with pytest.raises(ValueError, match="dtype must be"):
        AutocastOptimWrapper(optimizer=torch.optim.SGD(model.parameters(), lr=0.1), dtype="bf61")


_FAULTS = """
import resource, sys, torch
from florence.engine import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "keep" else None
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def step():  # a training step's pattern: large blocks allocated, written, all freed at the end
    return [torch.ones(n).sum() for n in (10_000_000, 20_000_000, 30_000_000, 15_000_000)]
for _ in range(3):
    step()
before = faults()
for _ in range(4):
    step()
print(applied, (faults() - before) // 4)
"""


@pytest.mark.skipif(not hasattr(os, "confstr") or "glibc" not in (os.confstr("CS_GNU_LIBC_VERSION") or ""),
                    reason="a glibc malloc setting")
def test_keep_freed_memory_reuses_pages_instead_of_faulting_them_in(tmp_path):
    """Once warm, a step of 40-120 MB blocks (300 MB) reuses most of its pages; with glibc's defaults
    every step faults them all in again (one fault per 4 kB page: ~73k). Kept, 0 faults per step in
    most runs and ~29k in some (a 120 MB block that does not fit the freed space, which depends on
    the heap's layout): at most 0.6x the default's is asserted."""
    import subprocess
    import sys

    out = {mode: subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, check=True,
                                cwd=tmp_path).stdout.split() for mode in ("default", "keep")}
    assert out["keep"][0] == "True"
    default, kept = int(out["default"][1]), int(out["keep"][1])
    assert default > 300_000_000 // 4096 // 2 and kept < 0.6 * default


def configs_needing_extras() -> dict:
    """Every shipped training config that needs an extra, by extra: configs/downstream/ (mmdet / mmseg /
    mmcv), and configs with a DeepSpeed ``strategy``."""
    from mmengine.config import Config

    needs = {"downstream": [], "deepspeed": []}
    for path in sorted(ROOT.glob("configs/**/*.py")):
        relative = path.relative_to(ROOT)
        if "_base_" in relative.parts or relative.parts[1] == "data_engine":  # pieces; not a training config
            continue
        if relative.parts[1] == "downstream":
            needs["downstream"].append(str(relative))
        elif "strategy" in Config.fromfile(str(path)):
            needs["deepspeed"].append(str(relative))
    return needs


@pytest.mark.parametrize("extra, packages", [("downstream", "mmcv,mmdet,mmseg,ftfy"), ("deepspeed", "deepspeed")])
def test_every_config_needing_an_uninstalled_extra_names_the_install_command(tmp_path, extra, packages):
    """tools/train.py and tools/test.py on each shipped config that needs ``extra``, with the extra's
    packages unimportable (in a process of its own): both stop with the command that installs it
    (tools/test.py on a DeepSpeed config needs no DeepSpeed: it gets as far as the checkpoint)."""
    import json
    import subprocess
    import sys

    configs = configs_needing_extras()[extra]
    assert configs, f"no shipped config needs the {extra} extra: the test would test nothing"
    out = subprocess.run([sys.executable, str(HERE / "extras_run.py"), packages, str(tmp_path), *configs],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    runs = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert len(runs) == 2 * len(configs), out.stdout[-3000:] + out.stderr[-3000:]
    for run in runs:
        if extra == "deepspeed" and run["tool"] == "test":  # evaluation runs on the plain Runner: no DeepSpeed
            assert run["stopped"].startswith("FileNotFoundError") and "none.pth" in run["stopped"], run
            continue
        assert run["stopped"].startswith(f"SystemExit: {run['config']} needs the {extra} extra, which is not "
                                         f"installed (") and f"bash tools/install.sh --{extra}" in run["stopped"], run


def test_an_import_error_outside_the_extras_stays_as_it_is(tmp_path, monkeypatch):
    """A typo in a config, or a missing module an extra does not install, is not blamed on an extra;
    an extra's package missing under another module's lazy import is (the innermost error counts)."""
    import sys

    from mmengine.config import Config

    from florence.engine import explain_missing_extras
    from florence.engine.jobs import missing_extra
    from florence.registry import MODELS

    typo = tmp_path / "typo.py"
    typo.write_text("from no_such_module_anywhere import Anything\nmodel = dict(type=Anything)\n")
    with pytest.raises(ModuleNotFoundError, match="no_such_module_anywhere"):
        with explain_missing_extras(str(typo)):
            MODELS.build(Config.fromfile(str(typo)).model)
    try:  # mmengine's shape: "Failed to import mmdet.models in ... for No module named 'foo'"
        try:
            raise ModuleNotFoundError("No module named 'foo'", name="foo")
        except ModuleNotFoundError:
            raise ModuleNotFoundError("Failed to import mmdet.models in x.py, line 1 for No module named 'foo'")
    except ModuleNotFoundError as e:
        assert missing_extra(e) is None  # mmdet is there; foo is what is missing
    monkeypatch.setitem(sys.modules, "deepspeed", None)
    try:
        try:
            import deepspeed  # noqa: F401
        except ModuleNotFoundError:
            raise ModuleNotFoundError("Failed to import florence.engine.deepspeed in c.py, line 20 for import of "
                                      "deepspeed halted; None in sys.modules")
    except ModuleNotFoundError as e:
        assert missing_extra(e) == ("deepspeed", "deepspeed")
    import inspect

    from florence.engine import evaluate, train

    for job in (train, evaluate):  # both jobs (florence train / test, tools/train.py / test.py) run inside it
        assert "with explain_missing_extras(config):" in inspect.getsource(job)


def _accumulation_case(accumulate: bool, counts: int, token_weighted: bool = True):
    """The update (parameter change, SGD lr 1) of 4 samples with very unequal targets: one batch of 4,
    or ``counts`` micro-batches through ``accumulative_counts=counts``."""
    from mmengine.optim import OptimWrapper

    from florence.data.multitask import TaskSample
    from florence.engine import Florence2Model

    torch.manual_seed(0)
    model = Florence2Model(model=dict(preset="tiny"), tokenizer=dict(
        texts_from="florence.data.synthetic:vocabulary_texts", vocab_size=300)).eval()  # no dropout
    targets = ["a red circle above a blue square and a green triangle next to a yellow star on grey",
               "a red circle", "blue", "a green triangle to the left of a small yellow star"]
    samples = [TaskSample("<CAPTION>", "What does the image describe?" if i % 2 else "Describe.", t, None, (64, 64))
               for i, t in enumerate(targets)]
    pixels = list(torch.randn(4, 3, 64, 64))
    before = [p.detach().clone() for p in model.parameters()]
    wrapper_type = AutocastOptimWrapper if token_weighted else OptimWrapper
    kwargs = dict(dtype="float32") if token_weighted else {}
    size = 4 // counts if accumulate else 4
    wrapper = wrapper_type(optimizer=torch.optim.SGD(model.parameters(), lr=1.0),
                           accumulative_counts=counts if accumulate else 1, **kwargs)
    for start in range(0, 4, size):
        model.train_step({"inputs": pixels[start:start + size], "data_samples": samples[start:start + size]}, wrapper)
    return torch.cat([(b - p.detach()).flatten() for b, p in zip(before, model.parameters())])


def test_gradient_accumulation_updates_exactly_as_the_large_batch():
    """accumulative_counts=k at batch b == batch k*b (fp32), although the micro-batches pad differently
    and hold 2-3x different token counts: the loss is weighted per token across the window."""
    large = _accumulation_case(accumulate=False, counts=1)
    assert large.abs().max() > 0
    for counts in (2, 4):
        accumulated = _accumulation_case(accumulate=True, counts=counts)
        error = ((accumulated - large).norm() / large.norm()).item()
        assert error < 1e-6, (counts, error)
    # mmengine's averaging of micro-batch means is not the large batch's update here: the check has teeth
    averaged = _accumulation_case(accumulate=True, counts=2, token_weighted=False)
    assert ((averaged - large).norm() / large.norm()).item() > 1e-2


def test_a_stream_resumes_in_process_and_refuses_another_batch_size(make_config, tmp_path):
    """A run streamed from shards resumes (one process, the mmengine Runner) at the sample after its
    checkpoint; resuming it with another batch size, which would change the order, is an error."""
    from florence.data import SyntheticScenes, write_shards

    write_shards(SyntheticScenes(seed=1, length=40, image_size=32, tasks=["<CAPTION>"]), tmp_path / "shards",
                 samples_per_shard=10)

    def config(work, iters, batch_size, resume=False):
        cfg = make_config(work_dir=tmp_path / work, max_iters=iters, image_size=32, batch_size=batch_size)
        cfg.model.update(reconstruction=None, objects=None)
        cfg.train_dataloader.update(sampler=None, dataset=dict(
            type="MultiTaskStream", image_size=32, datasets=[dict(type="ShardedDataset", path=str(tmp_path / "shards"))]))
        cfg.default_hooks.checkpoint.interval = 3
        cfg.resume = resume
        return cfg

    seen = {}

    def train(cfg, name):
        runner = Runner.from_cfg(cfg)
        batches = seen.setdefault(name, [])
        runner.train_loop.run_iter = (lambda run: lambda batch: (batches.append(
            [s.source for s in batch["data_samples"]]), run(batch))[1])(runner.train_loop.run_iter)
        runner.train()

    train(config("straight", 5, 2), "straight")
    train(config("resumed", 3, 2), "first")
    train(config("resumed", 5, 2, resume=True), "resumed")
    assert seen["first"] + seen["resumed"] == seen["straight"] and len(seen["resumed"]) == 2
    with pytest.raises(ValueError, match="cannot resume this stream exactly.*'batch_size': 2.*'batch_size': 3"):
        train(config("resumed", 7, 3, resume=True), "other")
