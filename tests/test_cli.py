"""The command line on real photographs: JSON Lines out, drawings, bad files reported."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from florence.cli import main
from florence.visualize import draw_result

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory):
    from skimage import data

    d = tmp_path_factory.mktemp("photos")
    Image.fromarray(data.astronaut()).save(d / "astronaut.jpg")
    Image.fromarray(data.coffee()).save(d / "coffee.png")
    Image.fromarray(data.camera()).save(d / "camera.png")  # grayscale
    return d


def test_infer_writes_jsonl_and_drawings(photo_dir, tiny_folder, tmp_path):
    out, vis = tmp_path / "res.jsonl", tmp_path / "vis"
    cmd = [sys.executable, str(ROOT / "tools" / "infer.py"), "--model", str(tiny_folder), "--task", "<OD>",
           str(photo_dir), "--out", str(out), "--vis", str(vis), "--max-new-tokens", "12", "--batch-size", "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "dtype 'auto' -> " in proc.stderr  # the default dtype is chosen for this machine, and said
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [Path(r["image"]).name for r in lines] == ["astronaut.jpg", "camera.png", "coffee.png"]
    assert all(set(r["result"]) >= {"bboxes", "labels"} and r["task"] == "<OD>" for r in lines)
    assert lines[0]["width"] == 512 and lines[2]["height"] == 400
    assert len(list(vis.glob("*.png"))) == 3


def test_infer_region_task_and_bad_file(photo_dir, tiny_folder, tmp_path, capsys):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 truncated")
    out = tmp_path / "res.jsonl"
    rc = main(["infer", "--model", str(tiny_folder), "--task", "region_to_category", "--text", "10,10,200,200",
               str(photo_dir / "coffee.png"), str(bad), "--out", str(out), "--max-new-tokens", "8"])
    assert rc == 1
    first, second = [json.loads(line) for line in out.read_text().splitlines()]
    assert first["task"] == "<REGION_TO_CATEGORY>" and isinstance(first["result"], str)
    assert "broken.jpg" in second["error"] and "corrupt" in second["error"]
    assert "could not be read" in capsys.readouterr().err


def test_infer_plain_model_gives_the_accelerated_results(photo_dir, tiny_folder, tmp_path):
    """``--plain`` runs without florence.accel: the same records as the default run."""
    records = {}
    for flags in ([], ["--plain"]):
        out = tmp_path / f"res{len(flags)}.jsonl"
        assert main(["infer", "--model", str(tiny_folder), "--task", "<OD>", str(photo_dir / "coffee.png"),
                     "--out", str(out), "--max-new-tokens", "10", "--dtype", "float32", *flags]) == 0
        records[bool(flags)] = json.loads(out.read_text())
    plain, fast = records[True]["result"], records[False]["result"]
    assert plain["bboxes"] == fast["bboxes"] and plain["labels"] == fast["labels"] and plain["bboxes"]
    assert plain["scores"] == pytest.approx(fast["scores"], rel=1e-5)  # fp32 summation order only


def test_draw_result_draws_every_shape():
    white = Image.new("RGB", (200, 100), "white")
    result = {"<OPEN_VOCABULARY_DETECTION>": {
        "bboxes": [[10, 10, 60, 60]], "bboxes_labels": ["box"],
        "polygons": [[[100, 10, 150, 10, 150, 60]]], "polygons_labels": ["tri"]}}
    drawn = draw_result(white, result)
    assert drawn.getpixel((10, 35)) != (255, 255, 255)  # left edge of the box
    assert drawn.getpixel((125, 10)) != (255, 255, 255)  # top edge of the triangle
    quads = draw_result(white, {"quad_boxes": [[20, 20, 180, 20, 180, 80, 20, 80]], "labels": ["text"]})
    assert quads.getpixel((180, 50)) != (255, 255, 255)
    assert white.getpixel((10, 35)) == (255, 255, 255)  # the input is left untouched
    # malformed model output draws what it can and never raises
    flipped = draw_result(white, {"bboxes": [[60, 60, 10, 10], [1, float("nan"), 3, 4], [1, 2]], "labels": ["a", "b", "c"],
                                  "polygons": [[[1, 2, 3]], None], "quad_boxes": [[1, 2, 3]]})
    assert flipped.getpixel((10, 35)) != (255, 255, 255)


def test_label_writes_filtered_shards_and_a_manifest(photo_dir, tiny_folder, tmp_path, capsys):
    (photo_dir / "broken.jpg").write_bytes(b"not a jpeg")
    try:
        code = main(["label", "--model", str(tiny_folder), str(photo_dir), "--tasks", "<OD>", "<CAPTION>",
                     "--out", str(tmp_path / "labels"), "--max-new-tokens", "12", "--min-score", "0.5",
                     "--shard-size", "2"])
    finally:
        (photo_dir / "broken.jpg").unlink()
    assert code == 0
    manifest = json.loads((tmp_path / "labels" / "manifest.json").read_text())
    assert manifest["images"] == 4 and manifest["shards_done"] == 2 and manifest["tasks"] == ["<OD>", "<CAPTION>"]
    assert manifest["annotators"] == [str(tiny_folder)]
    assert [Path(b["image"]).name for b in manifest["bad_images"]] == ["broken.jpg"]
    assert set(manifest["filters"]) == {"ScoreThreshold", "ClassAwareNMS", "MinBoxSize", "WholeImageBoxes"}
    out = capsys.readouterr()
    assert f"labels of 4 images -> {tmp_path / 'labels'}" in out.out and "could not be labelled" in out.err


def test_label_reads_through_views(photo_dir, tiny_folder, tmp_path):
    """--view makes one annotator per model and view; their labels merge by --consensus."""
    out = tmp_path / "views"
    assert main(["label", "--model", str(tiny_folder), str(photo_dir), "--task", "<OD>", "--out", str(out),
                 "--max-new-tokens", "12", "--view", "identity", "--view", "hflip", "--consensus", "1",
                 "--min-score", "0"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["annotators"] == [f"{tiny_folder} [identity]", f"{tiny_folder} [hflip]"]
    with pytest.raises(SystemExit, match="--view: view 'rotate': unknown part"):
        main(["label", "--model", str(tiny_folder), str(photo_dir), "--task", "<OD>", "--out", str(out),
              "--view", "rotate"])


def test_shards_writes_a_configs_sources_and_the_config_that_streams_them(tmp_path, capsys):
    """``florence shards`` on the main job's config (its one synthetic source cut to 12 scenes): shards
    that read back as the source's items, and a printed dataloader config that trains from them."""
    import itertools

    from florence.data import MultiTaskStream, ShardedDataset

    config = Path(__file__).resolve().parents[1] / "configs" / "florence2" / "florence2_tiny_synthetic.py"
    assert main(["shards", str(config), "--out", str(tmp_path), "--samples-per-shard", "5", "--cfg-options",
                 "train_dataloader.dataset.datasets.0.length=12", "train_dataloader.dataset.datasets.0.image_size=32"]) == 0
    out = capsys.readouterr().out
    folder = tmp_path / "0-SyntheticScenes"
    assert f"12 samples of SyntheticScenes -> {folder} (3 shards)" in out
    snippet = out[out.index("train_dataloader.update("):]
    namespace = {"train_dataloader": {}}
    exec(snippet, {"dict": dict}, namespace)  # the printed config is valid Python naming the folder
    dataset = namespace["train_dataloader"]["dataset"]
    assert dataset["type"] == "MultiTaskStream" and dataset["datasets"][0]["path"] == str(folder)
    from florence.engine import load_config
    from florence.registry import DATASETS

    cfg = load_config(str(config), {"train_dataloader.dataset.datasets.0.length": 12,
                                    "train_dataloader.dataset.datasets.0.image_size": 32})
    source = DATASETS.build(cfg.train_dataloader.dataset.datasets[0])
    items = list(itertools.islice(ShardedDataset(folder, shuffle=False, rank=0, world_size=1), 12))
    assert [i["tasks"] for i in items] == [json.loads(json.dumps(source[k]["tasks"])) for k in range(12)]
    stream = MultiTaskStream([ShardedDataset(folder, rank=0, world_size=1)], image_size=32)
    assert next(iter(stream))["inputs"].shape == (3, 32, 32)


def _florence(*args, timeout=600) -> subprocess.CompletedProcess:
    """``florence ARGS`` as a user runs it: its own process."""
    return subprocess.run([sys.executable, "-m", "florence.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def test_train_test_export_infer_run_the_loop(photo_dir, tmp_path):
    """The loop through the one command: ``florence train`` (then ``--resume`` further), ``florence
    test`` (the metric table printed and written), ``florence export`` (a model folder, and that folder
    as ONNX with ``--model``) and ``florence infer`` on the exported folder."""
    from engine.conftest import small_config

    cfg_path, work = tmp_path / "cfg.py", tmp_path / "work"
    small_config(tmp_path / "unused", max_iters=4, image_size=64, batch_size=2).dump(str(cfg_path))
    run = _florence("train", cfg_path, "--work-dir", work)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (work / "iter_4.pth").exists() and not (work / "iter_6.pth").exists()
    run = _florence("train", cfg_path, "--work-dir", work, "--resume", "--cfg-options", "train_cfg.max_iters=6")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "resumed epoch: 0, iter: 4" in run.stdout + run.stderr and (work / "iter_6.pth").exists()

    run = _florence("test", cfg_path, work / "iter_6.pth", "--out", tmp_path / "m.json", "--work-dir",
                    tmp_path / "t")
    assert run.returncode == 0, run.stderr[-3000:]
    table = json.loads((tmp_path / "m.json").read_text())["table"]
    assert {r["task"] for r in table} >= {"<OD>", "<CAPTION>"}
    assert all(r["task"] in run.stdout and r["metric"] in run.stdout for r in table)  # the table printed

    assert main(["export", str(cfg_path), str(work / "iter_6.pth"), str(tmp_path / "model")]) == 0
    assert (tmp_path / "model" / "model.safetensors").exists()
    pytest.importorskip("onnx", reason="the onnx extra is not installed (bash tools/install.sh --onnx)")
    assert main(["export", "--model", str(tmp_path / "model"), str(tmp_path / "onnx"), "--format", "onnx"]) == 0
    assert (tmp_path / "onnx" / "onnx" / "vision_encoder.onnx").exists()

    out = tmp_path / "od.jsonl"
    assert main(["infer", str(photo_dir / "coffee.png"), "--model", str(tmp_path / "model"), "--task", "od",
                 "--out", str(out), "--max-new-tokens", "8", "--num-beams", "1"]) == 0
    record = json.loads(out.read_text())
    assert record["task"] == "<OD>" and set(record["result"]) >= {"bboxes", "labels"}


def test_the_command_lines_are_checked_before_anything_runs(capsys):
    """Wrong argument counts of ``export`` and a model given twice to ``serve`` are usage errors
    (exit status 2, the verb named); ``--help`` of the command and of each verb answers without
    importing torch or mmengine and shows an example."""
    for argv, message in ((["export", "a", "b"], "export takes CONFIG CHECKPOINT OUT_DIR"),
                          (["export", "--model", "m", "a", "b"], "export --model MODEL takes one path"),
                          (["export", "--model", "m", "out", "--format", "safetensors"], "--format onnx"),
                          (["serve", "m", "--model", "n"], "the model given twice"),
                          (["serve"], "--model MODEL is required")):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2 and message in capsys.readouterr().err, argv
    probe = ("import sys, contextlib, io\nfrom florence.cli import main\n"
             "for verb in [[], ['train'], ['test'], ['infer'], ['export'], ['label'], ['shards'], ['serve'], "
             "['tasks']]:\n"
             "    with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.suppress(SystemExit):\n"
             "        main([*verb, '--help'])\n"
             "    assert 'example' in out.getvalue(), verb\n"
             "print(sorted(m for m in ('torch', 'mmengine', 'transformers') if m in sys.modules))\n")
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "[]", run.stderr[-2000:]


def test_label_takes_task_as_every_verb_does():
    """``--task`` (repeatable, several values) is label's option as it is infer's; ``--tasks`` still works."""
    from florence.cli import parse

    args = parse(["label", str(photo_dir), "--model", "m", "--task", "<OD>", "caption", "--tasks", "ocr",
                  "--out", "o"])
    assert args.tasks == ["<OD>", "caption", "ocr"]
    assert parse(["infer", "x", "--model", "m", "--task", "od", "--out", "o", "--plain"]).plain
    assert parse(["infer", "x", "--model", "m", "--task", "od", "--out", "o", "--no-accelerate"]).plain
