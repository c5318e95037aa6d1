"""A labelling run killed with SIGKILL (while a shard's labels are written, between a shard's labels
and its counts, at a random moment) and started again ends with exactly the files of a run that was
never interrupted, and leaves no temporary file."""
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from florence.data.synthetic import make_scene

SCRIPT = Path(__file__).with_name("label_run.py")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    for i in range(18):  # 6 shards of 3
        make_scene(random.Random(i), 64).image.save(folder / f"{i:02d}.png")
    return folder


def start(images, out, pause=0.0, pause_on=""):
    env = dict(os.environ, FLORENCE_TEST_SAVE_PAUSE=str(pause), FLORENCE_TEST_SAVE_PAUSE_ON=pause_on)
    return subprocess.Popen([sys.executable, str(SCRIPT), str(images), str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)


def finish(proc):
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert "DONE" in out


def contents(folder: Path) -> dict:
    """Every file of a label folder, the timings left out."""
    files = {}
    for path in sorted(folder.iterdir()):
        data = path.read_text()
        if path.suffix == ".json":
            data = json.loads(data)
            data = {k: v for k, v in data.items() if "second" not in k}
        files[path.name] = data
    return files


@pytest.fixture(scope="module")
def reference(images, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference")
    finish(start(images, out))
    return contents(out)


@pytest.mark.parametrize("when", ["writing shard-00002.jsonl", "writing shard-00002.json", "random"])
def test_sigkill_then_restart_gives_the_uninterrupted_files(images, reference, tmp_path, when):
    out = tmp_path / "labels"
    target = "plan.json" if when == "random" else when.split()[-1]
    proc = start(images, out, pause=2.0, pause_on="" if when == "random" else target)
    for line in proc.stdout:  # the first write (random: of plan.json, before any shard)
        if line.startswith("SAVING") and f".{target}." in line:
            break
    if when == "random":  # 6 shards of 2 batches take ~0.7 s
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=random.Random(7).uniform(0.1, 0.6))
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"the run ended before the kill ({when})"
    left = contents(out)
    finished = [name for name in left if name.startswith("shard-") and name.endswith(".json")]
    assert len(finished) < 6 and all(left[name] == reference[name] for name in finished)
    for name in finished:  # a shard with counts has all its labels
        assert left[name.replace(".json", ".jsonl")] == reference[name.replace(".json", ".jsonl")]
    if when != "random":
        assert any(p.name.endswith(".tmp") for p in out.iterdir())  # killed inside the write
        assert "shard-00002.json" not in left
    finish(start(images, out))
    assert contents(out) == reference  # no temporary file left, nothing lost or doubled
