"""Data-parallel training with 2 CPU processes (torchrun, gloo) through tools/train.py's launcher path."""
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def test_two_process_ddp_on_cpu_keeps_replicas_in_sync_on_disjoint_data(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531",
           str(HERE / "ddp_train.py"), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert ranks[0]["wrapper"] == "DataParallelAnyDevice"
    assert len(ranks[0]["seen"]) == len(ranks[1]["seen"]) == 8  # 4 iterations x batch 2 on each rank
    assert not set(ranks[0]["seen"]) & set(ranks[1]["seen"])  # each rank its own shard of the data
    # gradients are averaged across processes, so the replicas stay identical
    assert ranks[0]["checksum"] == ranks[1]["checksum"]
    assert (tmp_path / "iter_4.pth").exists()  # rank 0 saved the checkpoint
