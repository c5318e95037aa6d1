"""florence.label: annotate -> filter -> shards, on synthetic scenes with a scripted annotator (known
outputs, so every count is known), bad images recorded, restart skips finished shards, ranks split
the shards; and a florence model as the annotator."""
import json
import random

import pytest
import torch

import florence
from florence.data import JsonlDataset
from florence.data.synthetic import make_scene
from florence.label import label, read_manifest

RICH = "A red circle above a blue square next to a green triangle."


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(10):
        make_scene(random.Random(i), 64).image.save(folder / f"{i:02d}.png")
    (folder / "05.png").write_bytes(b"not a png")  # one unreadable image
    return folder


class Scripted:
    """Per image: the true box, a duplicate of it (NMS removes it), a low-scored box (the threshold
    removes it); captions alternate between rich and too simple."""

    def __init__(self):
        self.seen, self.captions = [], 0

    def __call__(self, batch, task):
        self.seen += [task] * len(batch)
        if task == "<CAPTION>":
            self.captions += len(batch)
            return [RICH if (self.captions - len(batch) + i) % 2 == 0 else "A cat." for i in range(len(batch))]
        return [{"bboxes": [[4, 4, 30, 30], [5, 4, 30, 31], [40, 40, 60, 60]], "labels": ["circle", "circle", "square"],
                 "scores": [0.9, 0.8, 0.1]} for _ in batch]


FILTERS = [dict(type="ScoreThreshold", min_score=0.5), dict(type="ClassAwareNMS", iou_threshold=0.5),
           dict(type="TextComplexity", min_complexity=3)]


def test_label_filters_counts_and_writes_shards_training_reads(images, tmp_path):
    annotator = Scripted()
    out = tmp_path / "labels"
    manifest = label(annotator, images, ["<OD>", "<CAPTION>"], out, filters=FILTERS, batch_size=2, shard_size=4,
                     progress=False)
    assert manifest["images"] == 10 and manifest["shards"] == manifest["shards_done"] == 3
    assert [b["image"].endswith("05.png") for b in manifest["bad_images"]] == [True]
    assert "05.png" in manifest["bad_images"][0]["image"] and manifest["bad_images"][0]["error"]
    # 9 readable images: each loses its low box and its duplicate; captions: the simple ones dropped
    assert manifest["filters"]["ScoreThreshold"] == {"items": 9, "samples": 0}
    assert manifest["filters"]["ClassAwareNMS"] == {"items": 9, "samples": 0}
    assert manifest["filters"]["TextComplexity"] == {"items": 0, "samples": 4}  # captions 1, 3, 5, 7 of 0-8
    assert manifest["labels"] == 9 + 5
    lines = [json.loads(line) for f in sorted(out.glob("shard-*.jsonl")) for line in f.read_text().splitlines()]
    assert len(lines) == manifest["labels"]
    od = [r for r in lines if r["task"] == "<OD>"]
    assert all(r["annotation"] == {"bboxes": [[4, 4, 30, 30]], "labels": ["circle"], "scores": [0.9]} for r in od)
    assert {r["annotation"] for r in lines if r["task"] == "<CAPTION>"} == {RICH}
    back = JsonlDataset(str(sorted(out.glob("shard-*.jsonl"))[0]))  # the labels train as they are
    assert len(back) > 0 and back[0]["task"] in ("<OD>", "<CAPTION>")
    assert read_manifest(out) == manifest


def without_speed(manifest):
    return {k: v for k, v in manifest.items() if "second" not in k}


def test_a_restart_skips_finished_shards_and_redoes_only_unfinished_ones(images, tmp_path):
    out = tmp_path / "labels"
    first = label(Scripted(), images, ["<OD>"], out, filters=FILTERS, shard_size=4, progress=False)
    again = Scripted()
    assert label(again, images, ["<OD>"], out, filters=FILTERS, shard_size=4, progress=False) == first  # same files
    assert again.seen == []  # nothing annotated twice
    (out / "shard-00001.json").unlink()  # as if killed after writing shard 1's labels but before its counts
    redo = Scripted()
    assert without_speed(label(redo, images, ["<OD>"], out, filters=FILTERS, shard_size=4,
                               progress=False)) == without_speed(first)
    assert len(redo.seen) == 3  # shard 1: images 4-7 of which 05.png is unreadable
    with pytest.raises(ValueError, match="another run.*tasks differ"):
        label(Scripted(), images, ["<CAPTION>"], out, shard_size=4, progress=False)
    with pytest.raises(ValueError, match="another run.*shard_size differ"):
        label(Scripted(), images, ["<OD>"], out, shard_size=5, progress=False)


def test_processes_split_the_shards(images, tmp_path):
    single = label(Scripted(), images, ["<OD>"], tmp_path / "one", shard_size=3, progress=False)
    for rank in (0, 1):
        label(Scripted(), images, ["<OD>"], tmp_path / "two", shard_size=3, rank=rank, world_size=2, progress=False)
    assert sorted(p.name for p in (tmp_path / "two").glob("shard-*.jsonl")) == \
        sorted(p.name for p in (tmp_path / "one").glob("shard-*.jsonl"))
    for f in (tmp_path / "one").glob("shard-*.jsonl"):
        assert f.read_text() == (tmp_path / "two" / f.name).read_text()
    assert read_manifest(tmp_path / "two")["labels"] == single["labels"]


def test_a_florence_model_annotates(images, tmp_path):
    torch.manual_seed(0)
    tok = florence.build_tokenizer(["a red circle", "a blue square"], vocab_size=300)
    model = florence.Florence2ForConditionalGeneration(florence.Florence2Config.preset("tiny", vocab_size=len(tok)))
    pipe = florence.pipeline(model, florence.Florence2Processor(tok))
    manifest = label(pipe, images, ["<OD>", "<CAPTION>"], tmp_path / "labels", generation=dict(max_new_tokens=12,
                     num_beams=1), keep_empty=True, progress=False)
    assert manifest["images"] == 10 and len(manifest["bad_images"]) == 1
    lines = [json.loads(line) for line in (tmp_path / "labels" / "shard-00000.jsonl").read_text().splitlines()]
    assert {r["task"] for r in lines} == {"<OD>", "<CAPTION>"} and len(lines) == 18  # untrained: whatever it says
    with pytest.raises(florence.TaskError):
        label(pipe, images, ["<NOT_A_TASK>"], tmp_path / "x", progress=False)


def test_an_unknown_engine_or_no_replicas_is_an_error_before_anything_runs(images, tmp_path):
    with pytest.raises(ValueError, match="engine is 'local' or 'ray', got 'spark'"):
        label(Scripted(), images, ["<OD>"], tmp_path / "a", engine="spark")
    with pytest.raises(ValueError, match="needs replicas >= 1 .* got 0 replicas"):
        label(Scripted(), images, ["<OD>"], tmp_path / "b", engine="ray", replicas=0)
    with pytest.raises(ValueError, match="not under torchrun"):
        label(Scripted(), images, ["<OD>"], tmp_path / "c", engine="ray", world_size=2, rank=0)
    assert not [p for d in "abc" for p in (tmp_path / d).glob("*")]  # nothing written


def test_tar_shards_are_labelled_as_their_images_are_one_label_shard_per_tar(images, tmp_path):
    from florence.data import write_shards

    files = sorted(images.iterdir())
    tars = tmp_path / "shards"
    write_shards([dict(image=str(f)) for f in files], tars, samples_per_shard=4)  # tars of 4, 4 and 2 images
    kwargs = dict(tasks=["<OD>", "<CAPTION>"], filters=FILTERS, batch_size=3, progress=False)
    from_files = label(Scripted(), images, out_dir=tmp_path / "files", shard_size=4, **kwargs)
    from_tars = label(Scripted(), str(tars), out_dir=tmp_path / "tars", **kwargs)
    # the same labels and counts, each image named by its tar and key instead of its path
    name = {str(f.resolve()): f"{tars / f'shard-{i // 4:06d}.tar'}:{i:09d}" for i, f in enumerate(files)}
    bad = name[str(images.resolve() / "05.png")]
    assert from_tars["bad_images"] == [dict(image=bad, error=from_tars["bad_images"][0]["error"])]
    assert from_tars["bad_images"][0]["error"].startswith(f"cannot read image {bad}: ")
    assert dict(without_speed(from_tars), bad_images=None) == dict(without_speed(from_files), bad_images=None)
    for k in range(3):
        want = [dict(json.loads(line), image=name[json.loads(line)["image"]])
                for line in (tmp_path / "files" / f"shard-{k:05d}.jsonl").read_text().splitlines()]
        got = [json.loads(line) for line in (tmp_path / "tars" / f"shard-{k:05d}.jsonl").read_text().splitlines()]
        assert got == want and got
    # resumed: only the unfinished tar is read and labelled again
    (tmp_path / "tars" / "shard-00001.json").unlink()
    again = Scripted()
    assert without_speed(label(again, tars / "manifest.json", out_dir=tmp_path / "tars", **kwargs)) == \
        without_speed(from_tars)
    assert len(again.seen) == 2 * 3  # tar 1: images 4-7, 05.png unreadable; two tasks
    with pytest.raises(ValueError, match="mix tar shard folders"):
        label(Scripted(), [tars, files[0]], out_dir=tmp_path / "mixed", **kwargs)


def test_a_listing_of_image_paths_is_labelled_as_the_images_it_names(images, tmp_path):
    files = sorted(images.iterdir())
    listing = tmp_path / "todo.txt"  # relative to its folder, an absolute path, a comment and a blank line
    listing.write_text("# to label\n" + "\n".join(f"images/{f.name}" for f in files[:6]) + f"\n\n{files[6]}\n")
    kwargs = dict(tasks=["<OD>"], filters=FILTERS, batch_size=3, shard_size=4, progress=False)
    from_list = label(Scripted(), listing, out_dir=tmp_path / "listed", **kwargs)
    from_files = label(Scripted(), files[:7], out_dir=tmp_path / "files", **kwargs)
    assert without_speed(from_list) == without_speed(from_files) and from_list["images"] == 7
    for k in range(2):
        assert (tmp_path / "listed" / f"shard-{k:05d}.jsonl").read_bytes() == \
            (tmp_path / "files" / f"shard-{k:05d}.jsonl").read_bytes()
    (tmp_path / "empty.lst").write_text("# nothing yet\n")
    with pytest.raises(ValueError, match="image listing .*empty.lst names no image"):
        label(Scripted(), tmp_path / "empty.lst", out_dir=tmp_path / "none", **kwargs)


def test_labels_of_tar_images_train_as_labels_of_image_files_do(images, tmp_path, monkeypatch):
    from florence.data import MultiTaskDataset, write_jsonl, write_shards

    files = sorted(images.iterdir())
    write_shards([dict(image=str(f)) for f in files], tmp_path / "shards", samples_per_shard=4)
    kwargs = dict(tasks=["<OD>"], filters=FILTERS, batch_size=3, progress=False)
    label(Scripted(), images, out_dir=tmp_path / "files", shard_size=4, **kwargs)
    monkeypatch.chdir(tmp_path)  # a relative shard folder: its images named by the tars' absolute paths
    label(Scripted(), "shards", out_dir=tmp_path / "tars", **kwargs)
    elsewhere = tmp_path / "elsewhere"  # label shards moved away from the tars train all the same
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    for k in range(3):
        from_files = JsonlDataset(str(tmp_path / "files" / f"shard-{k:05d}.jsonl"))
        from_tars = JsonlDataset(str((tmp_path / "tars" / f"shard-{k:05d}.jsonl").rename(elsewhere / f"{k}.jsonl")))
        assert len(from_tars) == len(from_files) > 0
        assert all(from_tars[i]["image"].startswith(str(tmp_path / "shards" / f"shard-{k:06d}.tar:"))
                   for i in range(len(from_tars)))
        assert [dict(x, image=None) for x in from_tars] == [dict(x, image=None) for x in from_files]
        pixels = [MultiTaskDataset([d], image_size=32)[0]["inputs"] for d in (from_tars, from_files)]
        assert torch.equal(*pixels)  # the same bytes, decoded the same way
        assert pixels[0].std() > 0
    copied = write_jsonl(from_tars, elsewhere / "copy" / "labels.jsonl")  # the images out of the tar, as files
    assert copied == len(from_tars) and sorted(f.name for f in (elsewhere / "copy").glob("*.png")) == [
        f"{i:06d}.png" for i in range(copied)]
    assert (elsewhere / "copy" / "000000.png").read_bytes() == files[8].read_bytes()  # tar 2 holds images 8 and 9
    broken = elsewhere / "broken.jsonl"
    tar = tmp_path / "shards" / "shard-000000.tar"
    broken.write_text(json.dumps(dict(image=f"{tar}:000000099", task="<OD>", annotation={"bboxes": [], "labels": []})))
    with pytest.raises(ValueError, match=f"missing image.*{tar} holds no image of a sample '000000099'"):
        JsonlDataset(str(broken))


@pytest.mark.parametrize("says, found", [(5, "4"), (3, "more than 3")])
def test_a_tar_that_does_not_hold_what_its_manifest_says_is_an_error_before_its_shard_is_written(
        images, tmp_path, says, found):
    from florence.data import write_shards

    tars = tmp_path / "shards"
    write_shards([dict(image=str(f)) for f in sorted(images.iterdir())], tars, samples_per_shard=4)
    manifest = json.loads((tars / "manifest.json").read_text())
    manifest["shards"][0]["samples"] = says
    (tars / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=f"shard-000000.tar holds {found} samples where its manifest says {says}"):
        label(Scripted(), tars, ["<OD>"], tmp_path / "labels", batch_size=2, progress=False)
    assert not list((tmp_path / "labels").glob("shard-00000.*"))
