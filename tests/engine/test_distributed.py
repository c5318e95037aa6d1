"""Multi-process training on CPU: torch DDP and DeepSpeed ZeRO, 2 processes each (torchrun, gloo)."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def run(tmp_path, *args, port):
    env = dict(os.environ, OMP_NUM_THREADS="1", TORCH_EXTENSIONS_DIR=str(ROOT / ".cache" / "torch_extensions"))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           str(HERE / "dist_run.py"), str(tmp_path), *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]


def test_ddp_keeps_replicas_in_sync_on_disjoint_data(tmp_path):
    ranks = run(tmp_path, port=29531)
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert ranks[0]["wrapper"] == "DataParallelAnyDevice"
    assert len(ranks[0]["seen"]) == len(ranks[1]["seen"]) == 8  # 4 iterations x batch 2 on each rank
    assert not set(ranks[0]["seen"]) & set(ranks[1]["seen"])  # each rank its own shard of the data
    # gradients are averaged across processes, so the replicas stay identical
    assert ranks[0]["checksum"] == ranks[1]["checksum"]
    assert (tmp_path / "iter_4.pth").exists()  # rank 0 saved the checkpoint


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None,
                    reason="the deepspeed extra is not installed (bash tools/install.sh --deepspeed)")
@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_zero_trains_on_cpu(tmp_path, stage):
    ranks = run(tmp_path, "--zero", str(stage), port=29540 + stage)
    assert [r["world_size"] for r in ranks] == [2, 2] and [r["zero_stage"] for r in ranks] == [stage, stage]
    assert all(len(r["losses"]) == 4 and all(v == v and v < 20 for v in r["losses"]) for r in ranks)
    assert not set(ranks[0]["seen"]) & set(ranks[1]["seen"])
    if stage == 2:  # full parameters on every rank, kept equal
        assert ranks[0]["checksum"] == ranks[1]["checksum"]
    assert (tmp_path / "iter_4.pth").is_dir()  # DeepSpeed's checkpoint folder
