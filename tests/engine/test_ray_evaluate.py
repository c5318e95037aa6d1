"""``florence test --engine ray`` (``florence.engine.evaluate(engine="ray")``): the generation on a local
Ray of 2 CPUs, two model replicas, gives the local run's metric table and drawings; the driver's own
model never generates."""
import json

import pytest

pytest.importorskip("ray", reason="the ray extra is not installed (bash tools/install.sh --ray)")

from engine.conftest import small_config  # noqa: E402
from helpers import one_thread  # noqa: E402

from florence.cli import main  # noqa: E402
from florence.engine import evaluate, train  # noqa: E402


def test_evaluation_on_ray_gives_the_local_table(ray_cluster, tmp_path, monkeypatch, capsys):
    cfg_path = tmp_path / "cfg.py"
    small_config(tmp_path / "unused", max_iters=4, image_size=64, batch_size=2, val_length=11).dump(str(cfg_path))
    train(str(cfg_path), work_dir=str(tmp_path / "work"))
    checkpoint = str(tmp_path / "work" / "iter_4.pth")
    local = one_thread(lambda: evaluate(str(cfg_path), checkpoint, out=str(tmp_path / "local.json"),
                                        work_dir=str(tmp_path / "local")))

    from florence.engine.model import Florence2Model

    def here(*args, **kwargs):
        raise AssertionError("the driver's model generated")

    monkeypatch.setattr(Florence2Model, "test_step", here)  # the replicas unpickle the class unpatched
    assert main(["test", str(cfg_path), checkpoint, "--out", str(tmp_path / "ray.json"), "--work-dir",
                 str(tmp_path / "ray"), "--engine", "ray", "--address", ray_cluster, "--replicas", "2"]) == 0
    on_ray = json.loads((tmp_path / "ray.json").read_text())
    assert on_ray == json.loads((tmp_path / "local.json").read_text()) and on_ray["table"] == local
    assert sum({r["task"]: r["samples"] for r in local}.values()) == 11  # every sample, each task once
    assert any(r["value"] == r["value"] for r in local)  # a number, not only the NaNs of tasks without metrics
    assert local[0]["task"] in capsys.readouterr().out  # the table printed
    # the report hook drew the predictions (its first 15: all 11) from the pixels the replicas sent back
    drawn = sorted(p.name for p in (tmp_path / "ray" / "predictions").iterdir())
    assert len(drawn) == 11 and drawn == sorted(p.name for p in (tmp_path / "local" / "predictions").iterdir())
    for name in drawn:
        assert (tmp_path / "ray" / "predictions" / name).read_bytes() == (tmp_path / "local" / "predictions" / name
                                                                          ).read_bytes()
    with pytest.raises(ValueError, match="engine is 'local' or 'ray', got 'spark'"):
        evaluate(str(cfg_path), checkpoint, engine="spark")
