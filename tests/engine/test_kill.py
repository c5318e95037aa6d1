"""A training process killed with SIGKILL (while a checkpoint is written, while ``last_checkpoint`` is
updated, and at a random moment) resumes with ``--resume`` to the same final weights as a run that
was never interrupted, and no checkpoint on disk is ever unreadable."""
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from .conftest import small_config

HERE = Path(__file__).resolve().parent


def launch(config, pause=0.0, resume=True):
    env = dict(os.environ, OMP_NUM_THREADS="1", FLORENCE_TEST_SAVE_PAUSE=str(pause))
    args = [sys.executable, str(HERE / "kill_run.py"), str(config)] + (["--resume"] if resume else [])
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            cwd=config.parent)


def run(proc, log, kill_when=None, delay=0.0):
    """Read the process's output; SIGKILL it ``delay`` s after the first line ``kill_when`` accepts.
    True if it was killed, False if it finished (successfully: asserted)."""
    for line in proc.stdout:
        log.append(line)
        if kill_when is not None and kill_when(line):
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            proc.stdout.close()
            return True
    assert proc.wait() == 0, "".join(log[-40:])
    return False


def assert_every_checkpoint_readable(work_dir: Path):
    for ckpt in work_dir.glob("iter_*.pth"):
        state = torch.load(ckpt, weights_only=True)  # a truncated or half-renamed file would fail here
        assert {"state_dict", "optimizer", "message_hub"} <= set(state), ckpt
    pointer = work_dir / "last_checkpoint"
    if pointer.exists():
        target = Path(pointer.read_text().strip())
        assert target.is_file(), f"last_checkpoint names {target}, which does not exist"


def test_sigkill_at_any_moment_resumes_to_the_uninterrupted_weights(tmp_path):
    # max_keep_ckpts=1 is the hard case: mmengine's own hook deletes the only checkpoint before
    # writing the next one, so a kill inside that save leaves nothing to resume from
    cfg = small_config(tmp_path / "straight", max_iters=8, image_size=64, batch_size=2)
    cfg.default_hooks.checkpoint.update(interval=2, max_keep_ckpts=1)
    straight_cfg = tmp_path / "straight.py"
    cfg.dump(str(straight_cfg))
    cfg.work_dir = str(tmp_path / "killed")
    killed_cfg = tmp_path / "killed.py"
    cfg.dump(str(killed_cfg))
    work = tmp_path / "killed"

    straight_log = []
    run(launch(straight_cfg, resume=False), straight_log)
    expected = torch.load(tmp_path / "straight" / "iter_8.pth", weights_only=True)["state_dict"]

    log = []
    kills = [
        ("while iter_4.pth is written", lambda line: line.startswith("SAVING") and "iter_4.pth" in line, 0.0),
        ("while last_checkpoint is pointed at iter_6.pth",
         lambda line: line.startswith("SAVING") and "last_checkpoint" in line and (work / "iter_6.pth").exists(), 0.0),
        ("at a random moment of training", lambda line: "Iter(train)" in line, random.Random(0).uniform(0.0, 1.5)),
    ]
    for what, when, delay in kills:
        assert run(launch(killed_cfg, pause=0.3), log, when, delay), f"the run finished before it was killed {what}"
        assert_every_checkpoint_readable(work)
    assert not run(launch(killed_cfg), log)  # the last resume runs to the end

    resumed_at = [int(m) for m in re.findall(r"resumed epoch: \d+, iter: (\d+)", "".join(log))]
    assert resumed_at[:2] == [2, 4], resumed_at  # the kills above lost one save each, never more
    assert len(resumed_at) == 3
    got = torch.load(work / "iter_8.pth", weights_only=True)["state_dict"]
    assert got.keys() == expected.keys()
    differ = [k for k in expected if not torch.equal(got[k], expected[k])]
    assert not differ, f"{len(differ)} tensors differ from the uninterrupted run, e.g. {differ[:3]}"
    assert not list(work.glob(".*.tmp")), "temporary files of the killed saves were left behind"
    assert sorted(p.name for p in work.glob("iter_*.pth")) == ["iter_8.pth"]  # max_keep_ckpts=1 kept
