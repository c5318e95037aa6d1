"""Tar shards: written from any dataset, read back equal, streamed per rank and worker with each sample
once per epoch, mixed by weight, and resumed at the exact sample (the 2-process training run with a
kill is in tests/engine/test_distributed.py)."""
import io
import itertools
import json
import tarfile
from collections import Counter

import numpy as np
import pytest
import torch

from florence.data import MultiTaskDataset, MultiTaskStream, ShardedDataset, SyntheticScenes, write_shards
from florence.data.shards import read_manifest


@pytest.fixture(scope="module")
def scenes():
    return SyntheticScenes(seed=3, length=48, image_size=32, tasks_per_image=2)


@pytest.fixture(scope="module")
def folder(scenes, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    write_shards(scenes, out, samples_per_shard=8)
    return out


def keys(items):
    return [item["source"] for item in items]


def test_write_then_read_gives_the_items_back(scenes, folder):
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["samples"] == 48 and [s["samples"] for s in manifest["shards"]] == [8] * 6
    with tarfile.open(folder / "shard-000000.tar") as tar:
        assert sorted(tar.getnames()[:2]) == ["000000000.json", "000000000.png"]
    items = list(itertools.islice(ShardedDataset(folder, shuffle=False, rank=0, world_size=1), 48))
    assert keys(items)[:2] == ["shard-000000.tar:000000000", "shard-000000.tar:000000001"]
    for i, item in enumerate(items):
        want = scenes[i]
        assert np.array_equal(np.asarray(item.pop("image")), np.asarray(want.pop("image")))  # PNG: lossless
        item.pop("source")
        assert item == json.loads(json.dumps(want))  # tuples come back as lists


def test_image_files_are_stored_as_they_are(tmp_path):
    from PIL import Image

    path = tmp_path / "photo.jpg"
    Image.new("RGB", (40, 30), (200, 10, 10)).save(path, quality=90)
    item = dict(image=str(path), image_size=(40, 30), task="<CAPTION>", text_input=None, annotation="a red photo")
    write_shards([item], tmp_path / "out")
    with tarfile.open(tmp_path / "out" / "shard-000000.tar") as tar:
        assert tar.extractfile("000000000.jpg").read() == path.read_bytes()  # not re-encoded
    (back,) = itertools.islice(ShardedDataset(tmp_path / "out", rank=0, world_size=1), 1)
    assert back["image"].size == (40, 30) and back["annotation"] == "a red photo"


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_every_sample_once_per_epoch_over_the_ranks(folder, world_size):
    per_rank = 48 // world_size
    epochs = [[], []]
    for rank in range(world_size):
        stream = ShardedDataset(folder, buffer_size=5, seed=1, rank=rank, world_size=world_size)
        items = keys(itertools.islice(stream, 2 * per_rank))
        epochs[0] += items[:per_rank]
        epochs[1] += items[per_rank:]
    everything = {f"shard-{k // 8:06d}.tar:{k:09d}" for k in range(48)}
    assert Counter(epochs[0]) == Counter(epochs[1]) == Counter(everything)  # each once per epoch
    assert epochs[0] != epochs[1]  # a new order every epoch
    assert epochs[0] != sorted(epochs[0])  # shuffled


def test_skipping_gives_the_rest_of_the_stream(folder):
    stream = ShardedDataset(folder, buffer_size=6, seed=2, rank=1, world_size=2)
    whole = keys(itertools.islice(stream.stream(), 60))
    assert keys(itertools.islice(stream.stream(skip=37), 23)) == whole[37:]


def loader(dataset, workers):
    return torch.utils.data.DataLoader(dataset, batch_size=3, num_workers=workers, collate_fn=list)


def sources(batch):
    samples = (x["data_samples"] for x in batch)
    return [(s.samples[0] if hasattr(s, "samples") else s).source for s in samples]


@pytest.mark.parametrize("workers", [0, 2])
def test_fast_forward_resumes_at_the_first_untrained_batch(folder, scenes, workers):
    """A dataloader (with workers taking turns) restarted after 7 batches by ``fast_forward`` gives the
    batches the uninterrupted one gave next."""
    def make():
        return MultiTaskStream([ShardedDataset(folder, buffer_size=4, rank=0, world_size=2),
                                dict(type=SyntheticScenes, seed=5, length=30, image_size=32)],
                               weights=[3, 1], image_size=32, rank=0, world_size=2)
    straight = [sources(b) for b in itertools.islice(loader(make(), workers), 12)]
    resumed = make()
    resumed.fast_forward(7, 3)
    assert [sources(b) for b in itertools.islice(loader(resumed, workers), 5)] == straight[7:]
    drawn = Counter(s.startswith("shard") for b in straight for s in b)
    assert drawn[True] > 2 * drawn[False] > 0  # weights 3:1


def test_the_stream_gives_the_model_inputs_the_dataset_gives(folder, scenes):
    stream = MultiTaskStream([ShardedDataset(folder, shuffle=False, rank=0, world_size=1)], image_size=32)
    mapped = MultiTaskDataset([scenes], image_size=32)
    for i, got in enumerate(itertools.islice(stream, 10)):
        want = mapped[i]
        assert torch.equal(got["inputs"], want["inputs"])
        assert [(s.task, s.prompt, s.target) for s in got["data_samples"].samples] == \
               [(s.task, s.prompt, s.target) for s in want["data_samples"].samples]


def test_bad_shards_are_named(folder, tmp_path):
    with pytest.raises(FileNotFoundError, match="no shard manifest"):
        ShardedDataset(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps(dict(format="florence-shards", samples=1,
                                                             shards=[dict(name="shard-000000.tar", samples=1)])))
    with pytest.raises(FileNotFoundError, match="missing: \\['shard-000000.tar'\\]"):
        ShardedDataset(tmp_path)
    (tmp_path / "manifest.json").write_text('{"shards": []}')
    with pytest.raises(ValueError, match="not a florence shard manifest"):
        read_manifest(tmp_path)
    with pytest.raises(ValueError, match="6 shards cannot feed 8 readers"):
        next(iter(ShardedDataset(folder, rank=0, world_size=8)))
    # a corrupt image inside a shard: the error names the shard and the key
    bad = tmp_path / "bad"
    write_shards([dict(image=np.zeros((32, 32, 3), np.uint8), task="<CAPTION>", annotation="x")], bad)
    with tarfile.open(bad / "shard-000000.tar", "w") as tar:
        for name, data in (("000000000.png", b"not a png"), ("000000000.json", b'{"task": "<CAPTION>"}')):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(ValueError, match="shard sample shard-000000.tar:000000000: ValueError: cannot read image"):
        next(iter(ShardedDataset(bad, rank=0, world_size=1)))


def test_uneven_shards_warn(tmp_path, scenes):
    write_shards(scenes, tmp_path, samples_per_shard=20)  # 20 + 20 + 8
    with pytest.warns(UserWarning, match="do not split evenly over 2 readers"):
        next(iter(ShardedDataset(tmp_path, rank=0, world_size=2)))


def test_images_decode_as_the_files_do(tmp_path):
    """An EXIF-rotated JPEG and a transparent PNG give the stream the pixels (and size) the map-style
    path gives them: orientation applied, transparency on white."""
    from PIL import Image

    jpeg, png = tmp_path / "rotated.jpg", tmp_path / "clear.png"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown portrait
    Image.new("RGB", (60, 20), (10, 200, 10)).save(jpeg, exif=exif)
    Image.new("RGBA", (30, 30), (255, 0, 0, 0)).save(png)
    items = [dict(image=str(p), image_size=size, task="<CAPTION>", text_input=None, annotation="x")
             for p, size in ((jpeg, (20, 60)), (png, (30, 30)))]
    write_shards(items, tmp_path / "out")
    stream = MultiTaskStream([ShardedDataset(tmp_path / "out", shuffle=False, rank=0, world_size=1)], image_size=32)
    mapped = MultiTaskDataset([items], image_size=32)
    for k, got in enumerate(itertools.islice(stream, 2)):
        assert torch.equal(got["inputs"], mapped[k]["inputs"]), k
    (first,) = itertools.islice(ShardedDataset(tmp_path / "out", shuffle=False, rank=0, world_size=1), 1)
    assert first["image"].size == (20, 60)


def test_skipping_whole_epochs_reads_only_the_current_one(folder, monkeypatch):
    stream = ShardedDataset(folder, buffer_size=4, seed=3, rank=0, world_size=2)  # 3 shards, 24 samples per epoch
    whole = keys(itertools.islice(stream.stream(), 3 * 24 + 10))
    opened = []
    records = ShardedDataset._records
    monkeypatch.setattr(ShardedDataset, "_records", lambda self, names: opened.extend(names) or records(self, names))
    assert keys(itertools.islice(stream.stream(skip=3 * 24 + 5), 5)) == whole[-5:]
    assert len(opened) <= 3  # epoch 3's shards only, not epochs 0-2's


def test_write_shards_refuses_an_endless_stream_and_names_a_bad_item(folder, tmp_path):
    with pytest.raises(ValueError, match="ShardedDataset streams without end"):
        write_shards(ShardedDataset(folder, rank=0, world_size=1), tmp_path / "again")
    with pytest.raises(ValueError, match="item 1 of list: KeyError"):
        write_shards([dict(image=np.zeros((8, 8, 3), np.uint8), task="<CAPTION>"), dict(task="<CAPTION>")],
                     tmp_path / "bad")
    assert not (tmp_path / "bad" / "manifest.json").exists()
