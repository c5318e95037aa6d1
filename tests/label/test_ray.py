"""The Ray engine (``label(..., engine="ray")``) on a local Ray of 2 CPUs started here: it writes the local
engine's shards byte for byte (a real model through two views, merged and filtered; each replica reading and
filtering its own batches, as on CPUs, or in stages of their own, as for GPUs; images as files, or in tar
shards read in Ray); a model replica killed with SIGKILL mid-run is restarted, its batch run again, and every
image labelled exactly once; a driver killed mid-run and started again keeps the shards it wrote and labels
only the rest."""
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="the ray extra is not installed (bash tools/install.sh --ray)")

import ray_run  # noqa: E402  (tests/label, on the path as pytest imports this file)
from helpers import one_thread  # noqa: E402

from florence.data.synthetic import make_scene  # noqa: E402
from florence.label import label, read_manifest  # noqa: E402

SCRIPT = Path(__file__).with_name("ray_run.py")


@pytest.fixture(scope="module")
def cluster(ray_cluster):
    ray.cloudpickle.register_pickle_by_value(ray_run)  # the replicas unpickle its annotators without importing it
    return ray_cluster


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    for i in range(11):  # shards of 3, 3, 3, 2; batches of 2 and 1
        make_scene(random.Random(i), 64).image.save(folder / f"{i:02d}.png")
    return folder


def contents(folder: Path) -> dict:
    """Every file of a label folder, timings left out."""
    files = {}
    for path in sorted(folder.iterdir()):
        if path.is_file():
            data = path.read_text()
            if path.suffix == ".json":
                data = {k: v for k, v in json.loads(data).items() if "second" not in k}
            files[path.name] = data
    return files


@pytest.fixture(scope="module")
def tars(images, tmp_path_factory):
    from florence.data import write_shards

    folder = tmp_path_factory.mktemp("tars")
    write_shards([dict(image=str(f)) for f in sorted(images.iterdir())], folder, samples_per_shard=3)
    return folder


@pytest.mark.parametrize("split, given", [(False, "images"), (True, "images"), (False, "tars")],
                         ids=["one-stage", "split-stages", "tar-shards"])
def test_ray_writes_the_local_engines_labels(cluster, images, tars, trained_folder, tmp_path, monkeypatch, split,
                                             given):
    from florence.label import ray_engine

    monkeypatch.setattr(ray_engine, "SPLIT_STAGES", split)  # CPU replicas read and filter themselves, or not
    folder, _ = trained_folder
    kwargs = dict(annotators=[dict(model=str(folder), view="identity"), dict(model=str(folder), view="hflip")],
                  images=str(images if given == "images" else tars), tasks=["<OD>"], batch_size=2, shard_size=3,
                  merge=dict(type="Consensus", min_votes=1), progress=False,
                  filters=[dict(type="ScoreThreshold", min_score=0.05),
                           dict(type="ClassAwareNMS", iou_threshold=0.5)],
                  generation=dict(num_beams=1, max_new_tokens=40))
    local = one_thread(lambda: label(out_dir=tmp_path / "local", **kwargs))
    on_ray = label(out_dir=tmp_path / "ray", engine="ray", replicas=2, **kwargs)
    assert local["labels"] > 0 and on_ray["labels"] == local["labels"]
    assert contents(tmp_path / "ray") == contents(tmp_path / "local")
    # where and how long each shard took: the node (this machine) and the stages' seconds
    manifest = read_manifest(tmp_path / "ray")
    assert manifest["shard_nodes"] == {str(k): [os.uname().nodename] for k in range(4)}
    assert sorted(manifest["shard_seconds"]) == ["0", "1", "2", "3"] and all(manifest["shard_seconds"].values())
    shard = json.loads((tmp_path / "ray" / "shard-00000.json").read_text())
    assert {"read images", f"annotator {folder} [hflip]", "merge", "ScoreThreshold"} <= set(shard["stage_seconds"])


def test_a_killed_replica_is_restarted_and_every_image_is_labelled_once(cluster, images, tmp_path):
    marker = tmp_path / "died"
    marker.write_text("")  # there: this run's annotator does not kill itself
    reference = label(ray_run.Scripted(die_at=3, marker=str(marker)), str(images), ["<OD>"], tmp_path / "local",
                      filters=ray_run.FILTERS, batch_size=2, shard_size=3, progress=False)
    marker.unlink()
    on_ray = label(ray_run.Scripted(die_at=3, marker=str(marker)), str(images), ["<OD>"], tmp_path / "ray",
                   filters=ray_run.FILTERS, batch_size=2, shard_size=3, progress=False, engine="ray", replicas=2)
    assert int(marker.read_text()) != os.getpid()  # a replica's process killed itself in the run
    assert contents(tmp_path / "ray") == contents(tmp_path / "local") and on_ray["labels"] == reference["labels"]
    labelled = [json.loads(line)["image"] for f in sorted((tmp_path / "ray").glob("shard-*.jsonl"))
                for line in f.read_text().splitlines()]
    assert sorted(labelled) == sorted(str(p.resolve()) for p in images.iterdir())  # each image once


def test_a_killed_driver_started_again_keeps_its_shards_and_labels_the_rest(cluster, images, tmp_path):
    reference = tmp_path / "local"
    label(ray_run.Scripted(), str(images), ["<OD>"], reference, filters=ray_run.FILTERS, batch_size=2, shard_size=3,
          progress=False)
    out = tmp_path / "ray"
    proc = subprocess.Popen([sys.executable, str(SCRIPT), str(images), str(out), cluster], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    for line in proc.stdout:  # the first shard's counts saved: kill the driver
        if line.startswith("WROTE shard-") and line.strip().endswith(".json"):
            break
    else:
        pytest.fail(f"the driver wrote no shard: exit {proc.wait()}")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    written = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*")}
    finished = sorted(p for p in written if p.endswith(".json"))
    assert 1 <= len(finished) < 4, finished  # killed mid-run
    time.sleep(0.05)  # a rewritten file would carry a later time
    again = label(ray_run.Scripted(), str(images), ["<OD>"], out, filters=ray_run.FILTERS, batch_size=2, shard_size=3,
                  progress=False, engine="ray", replicas=2)
    assert contents(out) == contents(reference) and again["shards_done"] == 4
    for name in finished:  # the shards written before the kill were kept, not labelled again
        assert out.joinpath(name).stat().st_mtime_ns == written[name]
        lines = name.replace(".json", ".jsonl")
        assert out.joinpath(lines).stat().st_mtime_ns == written[lines]
