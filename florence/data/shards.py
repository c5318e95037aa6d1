"""Datasets larger than memory: tar shards written from any dataset and streamed in training.

A shard folder holds webdataset tar files and a manifest::

    shards/shard-000000.tar   # per sample KEY.json (the item without its image) and KEY.png / KEY.jpg
    shards/shard-000001.tar   # (the image: the original file's bytes when the item names a file)
    shards/manifest.json      # {"format": "florence-shards", "samples": N, "shards": [{"name", "samples"}]}

Why webdataset's format: shards are plain tar files (``tar tf`` lists them; webdataset, Hugging Face
``datasets`` and others read them), read front to back in large sequential reads, and need no server
or index. Its ``TarWriter`` writes them and its tar iterators read them (local paths or any URL its
``gopen`` opens, e.g. ``pipe:aws s3 cp s3://bucket/shard-000000.tar -``). The order the samples are
read in is ours, because webdataset's pipeline cannot resume at a sample:

- every epoch permutes the shards (from ``seed`` and the epoch) and deals them out to the readers,
  one reader per (rank, dataloader worker): reader ``r`` of ``R`` reads shards ``r, r + R, ...``;
- each reader shuffles through a buffer of ``buffer_size`` samples, seeded by (seed, epoch, reader),
  emptied at the end of every epoch: each sample is read once per epoch, on one rank;
- the stream never ends (epoch after epoch), so a dataloader's workers take their turns in a fixed
  round robin and the sample behind every trained batch is known: a resumed run (``--resume``)
  fast-forwards each reader past what was trained without decoding those samples
  (:class:`~florence.engine.TrainLoop`).

Each sample is seen exactly once per epoch across ranks when every reader gets the same number of
samples (shards of equal size, a multiple of the readers in count): :func:`write_shards` writes equal
shards but the last, and :class:`ShardedDataset` warns when the readers' epochs differ in length.
"""
from __future__ import annotations

import io
import itertools
import json
import os
import random
import warnings
from pathlib import Path

import numpy as np
import torch

from ..atomic import open_atomic, write_text
from ..processing.image import TAR_IMAGE_EXTENSIONS, load_image, to_rgb
from ..registry import DATASETS

__all__ = ["ShardedDataset", "epoch_part", "image_member", "is_shard_folder", "read_manifest", "reader_placement",
           "shard_urls", "tar_samples", "worker_slot", "write_shards"]

MANIFEST = "manifest.json"
FORMAT = "florence-shards"
_EXTENSIONS = {".jpg": "jpg", ".jpeg": "jpg", ".png": "png", ".webp": "webp", ".bmp": "bmp", ".tif": "tiff",
               ".tiff": "tiff", ".gif": "gif"}


def _image_member(image) -> tuple[str, bytes]:
    """(extension, bytes) of an item's image: a file's own bytes (no re-encoding, EXIF kept), else PNG
    of what :func:`~florence.processing.image.load_image` makes of it (any array, tensor or PIL mode)."""
    if isinstance(image, (str, os.PathLike)) and Path(image).suffix.lower() in _EXTENSIONS:
        return _EXTENSIONS[Path(image).suffix.lower()], Path(image).read_bytes()
    image = load_image(image)
    buffer = io.BytesIO()
    try:
        image.save(buffer, format="PNG")
    except (OSError, ValueError):  # a mode PNG cannot hold (CMYK, ...): as the model would see it
        buffer = io.BytesIO()
        to_rgb(image).save(buffer, format="PNG")
    return "png", buffer.getvalue()


def _plain(x):
    """numpy values as JSON numbers and lists."""
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"{type(x).__name__} cannot be written to a shard's json")


def write_shards(dataset, folder, samples_per_shard: int = 1000, progress: bool = False) -> dict:
    """Write every item of ``dataset`` (a sequence of florence items: ``dict(image, image_size, task,
    text_input, annotation, ...)``, or an iterable of them) into ``folder`` as tar shards of
    ``samples_per_shard`` items, and the manifest; returns the manifest. Each shard and the manifest
    are written atomically (the manifest last), so a killed run leaves no partial shard, and a folder
    with a manifest is complete. ``progress`` shows a progress bar."""
    from tqdm import tqdm
    from webdataset import TarWriter

    if samples_per_shard < 1:
        raise ValueError(f"samples_per_shard must be >= 1, got {samples_per_shard}")
    if hasattr(dataset, "stream") or hasattr(dataset, "fast_forward"):
        raise ValueError(f"write_shards: {type(dataset).__name__} streams without end; pass the dataset it reads "
                         "(or write a folder's items with itertools.islice(..., n))")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST).unlink(missing_ok=True)  # rewriting: the folder is incomplete until the new manifest
    sized = not isinstance(dataset, torch.utils.data.IterableDataset) and hasattr(dataset, "__getitem__") \
        and hasattr(dataset, "__len__")
    items = (dataset[i] for i in range(len(dataset))) if sized else iter(dataset)
    bar = tqdm(total=len(dataset) if sized else None, unit="sample", desc=f"shards {folder.name}", disable=not progress)
    shards, index = [], 0
    while True:
        chunk = list(itertools.islice(items, samples_per_shard))
        if not chunk:
            break
        name = f"shard-{len(shards):06d}.tar"
        with open_atomic(folder / name) as f, TarWriter(f, encoder=False, mtime=0) as tar:
            for item in chunk:
                try:
                    ext, data = _image_member(item["image"])
                    meta = json.dumps({k: v for k, v in item.items() if k != "image"}, default=_plain).encode()
                except Exception as e:  # name the item: a bad one must be findable
                    raise ValueError(f"write_shards: item {index} of {type(dataset).__name__}: "
                                     f"{type(e).__name__}: {e}") from e
                tar.write({"__key__": f"{index:09d}", ext: data, "json": meta})
                index += 1
        shards.append(dict(name=name, samples=len(chunk)))
        bar.update(len(chunk))
    bar.close()
    if not shards:
        raise ValueError("write_shards: the dataset has no items")
    manifest = dict(format=FORMAT, version=1, samples=index, shards=shards)
    write_text(folder / MANIFEST, json.dumps(manifest, indent=1))
    return manifest


def _manifest_file(path) -> Path:
    path = Path(path)
    return path / MANIFEST if path.is_dir() else path


def is_shard_folder(path) -> bool:
    """Whether ``path`` is a shard folder (or its ``manifest.json``): a manifest of this format, not yet
    checked (:func:`read_manifest` checks it)."""
    file = _manifest_file(path)
    try:
        return file.name == MANIFEST and json.loads(file.read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def read_manifest(path) -> tuple[Path, dict]:
    """(folder, manifest) of a shard folder or its ``manifest.json``, checked."""
    file = _manifest_file(path)
    if not file.is_file():
        raise FileNotFoundError(f"{file}: no shard manifest (write shards with florence.data.write_shards)")
    try:
        manifest = json.loads(file.read_text())
        ok = manifest.get("format") == FORMAT and all(int(s["samples"]) > 0 for s in manifest["shards"])
    except (ValueError, KeyError, TypeError, AttributeError):
        ok = False
    if not ok or not manifest["shards"]:
        raise ValueError(f"{file}: not a florence shard manifest (expected {{'format': {FORMAT!r}, "
                         "'shards': [{'name': ..., 'samples': > 0}, ...]}})")
    missing = [s["name"] for s in manifest["shards"] if "://" not in s["name"] and ":" not in s["name"][:6]
               and not (file.parent / s["name"]).is_file()]
    if missing:
        raise FileNotFoundError(f"{file}: {len(missing)} shard(s) it lists are missing: {missing[:5]}")
    return file.parent, manifest


def shard_urls(folder: Path, manifest: dict) -> list[tuple[str, int]]:
    """(url, samples) of each tar a shard folder's manifest lists: a file's path, or the URL as written."""
    return [(s["name"] if "://" in s["name"] or s["name"].startswith("pipe:") else str(folder / s["name"]),
             int(s["samples"])) for s in manifest["shards"]]


def tar_samples(url: str):
    """The samples of one tar (a path, or any URL webdataset's ``gopen`` opens), front to back: its
    members grouped by key (``{"__key__": KEY, "json": bytes, "png": bytes, ...}``), not decoded."""
    from webdataset.gopen import gopen
    from webdataset.tariterators import group_by_keys, tar_file_expander

    with gopen(url, "rb") as stream:
        yield from group_by_keys(tar_file_expander([dict(url=url, stream=stream)]))


def image_member(sample: dict) -> str:
    """The name of a raw sample's image member (``"png"``, ``"jpg"``, ...); StopIteration if it has none."""
    return next(k for k in sample if k in TAR_IMAGE_EXTENSIONS)


def worker_slot(batches: int = 0) -> tuple[int, int, int]:
    """(worker, workers, batches made) of the calling dataloader worker (the main process: worker 0 of
    1) in a run that resumes after ``batches`` batches of this rank. A dataloader takes batches from
    its workers in turn, worker ``k % W`` making batch ``k``, and a new dataloader starts with worker 0:
    so worker ``w`` continues the part of worker ``(w + batches) % W``, whose turn is next, which had
    made ``len(range(w', batches, W))`` of them."""
    info = torch.utils.data.get_worker_info()
    if info is None:
        return 0, 1, batches
    worker = (info.id + batches) % info.num_workers
    return worker, info.num_workers, len(range(worker, batches, info.num_workers))


def reader_placement(rank: int, world_size: int, worker: int | None = None, workers: int | None = None):
    """(reader, readers): every (rank, dataloader worker) pair reads its own part of a stream."""
    if worker is None:
        worker, workers, _ = worker_slot()
    return rank * workers + worker, world_size * workers


def epoch_part(items, seed: int, epoch: int, reader: int, readers: int, shuffle: bool = True) -> list:
    """Reader ``reader``'s part of ``items`` in ``epoch``: permuted from (seed, epoch), then dealt out
    (``reader, reader + readers, ...``), so the readers' parts of an epoch hold every item once."""
    items = list(items)
    if shuffle:
        random.Random(f"{seed}/{epoch}").shuffle(items)
    return items[reader::readers]


def _dist_info(rank, world_size) -> tuple[int, int]:
    if rank is None or world_size is None:
        from mmengine.dist import get_dist_info
        r, w = get_dist_info()
        rank, world_size = (r if rank is None else rank), (w if world_size is None else world_size)
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, world_size), got rank {rank} of {world_size}")
    return rank, world_size


@DATASETS.register_module()
class ShardedDataset(torch.utils.data.IterableDataset):
    """The items of a shard folder as an endless stream (one epoch after another), for
    :class:`~florence.data.MultiTaskStream`. Items are those the shards were written from, the image
    decoded (a PIL image) and ``source`` naming the shard and key.

    Args:
        path: the shard folder (or its ``manifest.json``).
        shuffle: permute the shards every epoch and shuffle the samples through a buffer.
        buffer_size: samples in the shuffle buffer (memory: that many encoded images).
        seed: seed of the shard permutation and the buffer.
        rank, world_size: this process's place among the training processes (default: torch.distributed's).
    """

    def __init__(self, path, shuffle: bool = True, buffer_size: int = 1000, seed: int = 0, rank: int | None = None,
                 world_size: int | None = None):
        self.folder, manifest = read_manifest(path)
        self.shards = [(s["name"], int(s["samples"])) for s in manifest["shards"]]
        self._sizes = dict(self.shards)
        self._urls = {s["name"]: url for s, (url, _) in zip(manifest["shards"], shard_urls(self.folder, manifest))}
        if buffer_size < 1:
            raise ValueError(f"buffer_size must be >= 1, got {buffer_size}")
        self.shuffle, self.buffer_size, self.seed = bool(shuffle), int(buffer_size), int(seed)
        self.rank, self.world_size = _dist_info(rank, world_size)
        self._warned = False

    @property
    def samples(self) -> int:
        """Items in the folder: one epoch over all ranks."""
        return sum(n for _, n in self.shards)

    def __repr__(self) -> str:
        return f"ShardedDataset({str(self.folder)!r}: {self.samples} samples in {len(self.shards)} shards)"

    def _records(self, names: list[str]):
        """(source, raw sample) of the named shards in order: the tar members grouped by key, not decoded."""
        for name in names:
            for sample in tar_samples(self._urls[name]):
                yield f"{name}:{sample['__key__']}", sample

    def raw(self, reader: int, readers: int, skip: int = 0):
        """This reader's endless stream of (source, raw sample), epoch after epoch, shuffled, past its
        first ``skip`` (whole epochs skipped by the manifest's counts, without reading them)."""
        if readers > len(self.shards):
            raise ValueError(f"{self.folder}: {len(self.shards)} shards cannot feed {readers} readers "
                             f"({self.world_size} ranks x dataloader workers): write more shards "
                             "(write_shards(samples_per_shard=...)) or use fewer workers")
        self._check_balance(readers)
        for epoch in itertools.count():
            names = epoch_part(self._sizes, self.seed, epoch, reader, readers, self.shuffle)
            length = sum(self._sizes[n] for n in names)
            if skip >= length:
                skip -= length
                continue
            records = itertools.islice(self._epoch(epoch, reader, names), skip, None)
            skip = 0
            yield from records

    def _epoch(self, epoch: int, reader: int, names: list[str]):
        records = self._records(names)
        if not self.shuffle:
            yield from records
        else:
            rng, buffer = random.Random(f"{self.seed}/{epoch}/{reader}"), []
            for record in records:
                if len(buffer) < self.buffer_size:
                    buffer.append(record)
                    continue
                j = rng.randrange(len(buffer))
                yield buffer[j]
                buffer[j] = record
            rng.shuffle(buffer)
            yield from buffer

    def _check_balance(self, readers: int) -> None:
        """Warn once when the readers' epochs differ in length: then each reader still reads each of its
        samples once per its own epoch, but the ranks' epochs drift apart."""
        if self._warned:
            return
        self._warned = True
        sizes = [n for _, n in self.shards]
        if readers > 1 and (len(sizes) % readers or len(set(sizes)) > 1):
            warnings.warn(f"{self.folder}: {len(sizes)} shards of {sorted(set(sizes))} samples do not split evenly "
                          f"over {readers} readers: ranks and workers read epochs of different lengths")

    @staticmethod
    def decode(source: str, sample: dict) -> dict:
        """The item of a raw sample: its json, the image decoded, ``source`` set."""
        try:
            item = json.loads(sample["json"])
            item["image"] = load_image(io.BytesIO(sample[image_member(sample)]))  # EXIF applied, as for files
        except (StopIteration, KeyError):
            raise ValueError(f"shard sample {source}: expected a .json and an image member, got "
                             f"{sorted(k for k in sample if not k.startswith('__'))}") from None
        except Exception as e:
            raise ValueError(f"shard sample {source}: {type(e).__name__}: {e}") from e
        item["source"] = source
        return item

    def stream(self, skip: int = 0, worker: int | None = None, workers: int | None = None):
        """The items of this rank's (calling or given) dataloader worker, past its first ``skip`` (not decoded)."""
        reader, readers = reader_placement(self.rank, self.world_size, worker, workers)
        for source, sample in self.raw(reader, readers, skip):
            yield self.decode(source, sample)

    def __iter__(self):
        return self.stream()
