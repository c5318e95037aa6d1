"""Multi-process training on CPU: torch DDP and DeepSpeed ZeRO, 2 processes each (torchrun, gloo).
DeepSpeed: bf16, the evaluation loop, a SIGKILL while a checkpoint is written and the exact resume,
and the same losses as one plain process on the same global batch."""
import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
needs_deepspeed = pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None,
                                     reason="the deepspeed extra is not installed (bash tools/install.sh --deepspeed)")


def launch(work_dir, *args, port, pause=0.0):
    env = dict(os.environ, OMP_NUM_THREADS="1", TORCH_EXTENSIONS_DIR=str(ROOT / ".cache" / "torch_extensions"),
               FLORENCE_TEST_SAVE_PAUSE=str(pause))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           str(HERE / "dist_run.py"), str(work_dir), *args]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def kill_all(proc):
    """SIGKILL torchrun and every process under it: the ranks run in sessions of their own (torchrun
    starts them so), which a signal to torchrun's process group would not reach."""
    import psutil

    tree = psutil.Process(proc.pid).children(recursive=True)
    for p in tree:  # the ranks and their dataloader workers first: torchrun must not see them exit
        p.kill()
    proc.send_signal(signal.SIGKILL)
    psutil.wait_procs(tree, timeout=30)


def run(work_dir, *args, port):
    proc = launch(work_dir, *args, port=port)
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-6000:]
    return [json.loads((work_dir / f"rank{r}.json").read_text()) for r in range(2)]


def step_losses(ranks):
    """The loss of each step over both processes' tokens (each process logs its own mean)."""
    return [sum(r["losses"][i] * r["tokens"][i] for r in ranks) / sum(r["tokens"][i] for r in ranks)
            for i in range(len(ranks[0]["tokens"]))]


@pytest.fixture(scope="module")
def plain_losses(tmp_path_factory):
    """One plain process (float32, no DeepSpeed) on the 2-process runs' global batch: 2 x 2 scenes."""
    from mmengine.runner import Runner

    from .conftest import small_config

    cfg = small_config(tmp_path_factory.mktemp("plain"), max_iters=4, image_size=64, batch_size=4)
    cfg.model.update(reconstruction=None, objects=None, init_seed=0)  # as dist_run.py builds it
    cfg.optim_wrapper.dtype = "float32"  # no bf16 autocast where bf16 is native: the float32 reference
    runner = Runner.from_cfg(cfg)
    runner.train()
    return [float(v) for v in runner.message_hub.get_scalar("train/loss").data[0]]


def test_ddp_keeps_replicas_in_sync_and_gives_the_plain_runs_losses(tmp_path, plain_losses):
    ranks = run(tmp_path, "--text-only", port=29531)
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert ranks[0]["wrapper"] == "DataParallelAnyDevice"
    assert len(ranks[0]["seen"]) == len(ranks[1]["seen"]) == 8  # 4 iterations x batch 2 on each rank
    assert not set(ranks[0]["seen"]) & set(ranks[1]["seen"])  # each rank its own shard of the data
    # gradients are averaged across processes, so the replicas stay identical
    assert ranks[0]["checksum"] == ranks[1]["checksum"]
    assert (tmp_path / "iter_4.pth").exists()  # rank 0 saved the checkpoint
    # the loss weighted per token across processes: one plain process on the same 4 scenes per step
    assert ranks[0]["tokens"] != ranks[1]["tokens"]
    assert step_losses(ranks) == pytest.approx(plain_losses, rel=1e-5)


def test_streamed_shards_give_each_sample_once_per_epoch_and_resume_exactly_after_sigkill(tmp_path):
    """2,000 synthetic scenes in 8 tar shards, streamed to 2 DDP processes (2 dataloader workers each) at
    20 scenes per process and step: the 50 steps of an epoch train on every scene once across the
    ranks, and a run killed (SIGKILL to every process) after its checkpoint at step 21 resumes there
    and trains in steps 22-50 on exactly the scenes the uninterrupted run did, in the same order (an
    odd step: each new worker takes up the other old worker's part)."""
    from florence.data import SyntheticScenes, write_shards

    shards = tmp_path / "shards"
    write_shards(SyntheticScenes(seed=7, length=2000, image_size=32, tasks=["<CAPTION>"]), shards, samples_per_shard=250)
    args = ("--shards", str(shards), "--workers", "2", "--image-size", "32", "--text-only", "--iters", "50",
            "--batch-size", "20", "--interval", "7")
    straight = run(tmp_path / "straight", *args, port=29561)
    seen = [r["seen"] for r in straight]
    assert [len(s) for s in seen] == [1000, 1000]
    everything = {f"shard-{k // 250:06d}.tar:{k:09d}" for k in range(2000)}
    assert len(set(seen[0] + seen[1])) == 2000 and set(seen[0] + seen[1]) == everything  # each scene once

    work = tmp_path / "killed"
    proc = launch(work, *args, port=29562)
    log = []
    for line in proc.stdout:
        log.append(line)
        if "Iter(train) [25/50]" in line:
            kill_all(proc)
            break
    proc.wait()
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL, "".join(log[-40:])
    assert Path((work / "last_checkpoint").read_text().strip()).name == "iter_21.pth"
    resumed = run(work, *args, "--resume", port=29563)
    for rank in range(2):  # steps 22-50 of each rank: the uninterrupted run's samples, none repeated or skipped
        assert resumed[rank]["seen"] == seen[rank][21 * 20:], rank


@needs_deepspeed
def test_deepspeed_zero3_gives_the_plain_runs_losses(tmp_path, plain_losses):
    """ZeRO-3 (parameters, gradients and optimizer states partitioned), float32, 2 processes x 2
    scenes: each step's loss over both processes' tokens equals one plain process's on the 4 scenes."""
    ranks = run(tmp_path, "--zero", "3", "--text-only", port=29543)
    assert [r["world_size"] for r in ranks] == [2, 2] and [r["zero_stage"] for r in ranks] == [3, 3]
    assert not set(ranks[0]["seen"]) & set(ranks[1]["seen"])
    assert ranks[0]["tokens"] != ranks[1]["tokens"]  # unequal token counts: the weighting matters
    got = step_losses(ranks)
    assert got == pytest.approx(plain_losses, rel=1e-5), (got, plain_losses)


def assert_deepspeed_checkpoints_complete(work_dir: Path):
    """Every checkpoint under a checkpoint's name holds the model states (one file, or with ZeRO-3 each
    process's slice) and both processes' optimizer shards, and loads; ``last_checkpoint`` names one of them."""
    whole, sliced = ["mp_rank_00_model_states.pt"], [f"zero_pp_rank_{r}_mp_rank_00_model_states.pt" for r in (0, 1)]
    for folder in work_dir.glob("iter_*.pth"):
        names = sorted(p.name for p in folder.iterdir())
        model = [n for n in names if n.endswith("model_states.pt")]
        assert model in (whole, sliced) and sum("optim_states" in n for n in names) == 2, (folder, names)
        for f in folder.iterdir():
            torch.load(f, weights_only=False)  # files this test wrote; DeepSpeed's own loader does the same
    pointer = work_dir / "last_checkpoint"
    if pointer.exists():
        assert Path(pointer.read_text().strip()).is_dir()


def kill_in_last_save_and_resume(work, args, ports) -> dict:
    """A run of ``args`` (4 iterations, checkpoints every 2) SIGKILLed, every process, while its last
    checkpoint (iteration 4) is being written, then resumed from the first: its final weights."""
    proc = launch(work, *args, port=ports[0], pause=0.5)
    log = []
    for line in proc.stdout:
        log.append(line)
        if line.startswith("SAVING") and ".iter_4.pth.tmp" in line and "optim_states" in line:
            kill_all(proc)  # the last save: one shard of iteration 4 written, the rest not
            break
    proc.wait()
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL, "".join(log[-40:])
    assert (work / ".iter_4.pth.tmp").is_dir() and not (work / "iter_4.pth").exists()
    assert_deepspeed_checkpoints_complete(work)
    assert Path((work / "last_checkpoint").read_text().strip()).name == "iter_2.pth"

    proc = launch(work, *args, "--resume", port=ports[1])
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-6000:]
    assert "resumed epoch: 0, iter: 2" in out
    assert_deepspeed_checkpoints_complete(work)
    assert not list(work.glob(".*.tmp")), "the killed save's temporary folder was left behind"
    return torch.load(work / "weights.pt", weights_only=True)


def assert_same_weights(got: dict, expected: dict):
    assert got.keys() == expected.keys()
    differ = [k for k in expected if not torch.equal(got[k], expected[k])]
    assert not differ, f"{len(differ)} tensors differ from the uninterrupted run, e.g. {differ[:3]}"


@needs_deepspeed
def test_deepspeed_config_as_shipped_evaluates_and_resumes_exactly_after_sigkill(tmp_path, plain_losses):
    """The shipped DeepSpeed config's precision as it ships (bf16 "auto": DeepSpeed's bf16 mode where
    this CPU computes bf16 natively, float32 elsewhere, logged), ZeRO-2, 2 processes: losses within
    bf16 rounding of the float32 plain run, the evaluation loop runs, and a run killed (SIGKILL to
    every process) while its second checkpoint (iteration 4 of 4) is being written resumes from the
    first to the uninterrupted run's exact weights."""
    from florence import hardware

    native = hardware.native_bf16("cpu")
    args = ("--zero", "2", "--shipped-precision", "--text-only", "--iters", "4", "--interval", "2", "--weights")
    straight = tmp_path / "straight"
    proc = launch(straight, *args, "--evaluate", port=29551)
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-6000:]
    ranks = [json.loads((straight / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["dtype"] for r in ranks] == ["torch.bfloat16" if native else "torch.float32"] * 2
    assert (f"DeepSpeed bf16 on: bf16 is native on cpu" if native else
            "DeepSpeed bf16 off (float32): bf16 is not native on cpu") in out
    assert [r["zero_stage"] for r in ranks] == [2, 2]
    got = step_losses(ranks)
    # bf16 keeps 8 bits of mantissa: logits off by ~0.4% move a loss near 9 by up to ~0.25 (measured:
    # 0.1-2.5% over these steps); a wrong update or wrong data moves it by 5-50%
    assert got == pytest.approx(plain_losses, rel=4e-2 if native else 1e-5), (got, plain_losses)
    table = json.loads((straight / "eval_last.json").read_text())  # rank 0's metric table of both ranks' samples
    per_task = {r["task"]: r["samples"] for r in table}
    assert sum(per_task.values()) == 4 and "<CAPTION>" in per_task  # the 4 held-out samples of both ranks
    expected = torch.load(straight / "weights.pt", weights_only=True)
    assert_same_weights(kill_in_last_save_and_resume(tmp_path / "killed", args, (29552, 29553)), expected)


@needs_deepspeed
@pytest.mark.parametrize("native", [True, False])
def test_deepspeed_bf16_auto_follows_the_hardware(monkeypatch, native, tmp_path):
    """The shipped config's ``bf16=dict(enabled="auto")`` becomes DeepSpeed's bf16 mode exactly where
    bf16 is native (both answers, whatever this CPU is; the log line is checked by the run above)."""
    from florence import hardware
    from florence.engine import load_config
    from florence.engine.deepspeed import DeepSpeedStrategy

    strategy = dict(load_config(str(ROOT / "configs/florence2/florence2_tiny_synthetic_deepspeed.py")).strategy)
    assert strategy.pop("type") is DeepSpeedStrategy and strategy["bf16"] == {"enabled": "auto"}
    monkeypatch.setattr(hardware, "native_bf16", lambda device="cpu": native)
    built = DeepSpeedStrategy(**strategy, work_dir=str(tmp_path))  # its log file goes there
    assert built.config["bf16"] == {"enabled": native}


@needs_deepspeed
def test_deepspeed_zero3_bf16_trains_and_resumes_exactly_after_sigkill(tmp_path, plain_losses):
    """ZeRO-3 with DeepSpeed's bf16 mode forced on (on CPUs without native bf16 torch emulates it,
    slower, same numbers), 2 processes, 4 steps: losses within bf16 rounding of the float32 plain run,
    checkpoints hold each process's slice of the model, and a run killed while its last checkpoint is
    written resumes to the uninterrupted run's exact weights (gathered whole from both processes)."""
    args = ("--zero", "3", "--bf16", "--text-only", "--iters", "4", "--interval", "2", "--weights")
    straight = tmp_path / "straight"
    ranks = run(straight, *args, port=29571)
    assert [r["zero_stage"] for r in ranks] == [3, 3] and [r["dtype"] for r in ranks] == ["torch.bfloat16"] * 2
    assert step_losses(ranks) == pytest.approx(plain_losses, rel=4e-2), (step_losses(ranks), plain_losses)
    assert_deepspeed_checkpoints_complete(straight)
    expected = torch.load(straight / "weights.pt", weights_only=True)
    assert_same_weights(kill_in_last_save_and_resume(tmp_path / "killed", args, (29572, 29573)), expected)
