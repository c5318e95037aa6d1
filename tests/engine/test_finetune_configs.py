"""Every fine-tuning config in configs/finetune/ builds and trains a few steps, then evaluates.

The tiny model stands in for Florence-2-base/-large: the test saves it (with its tokenizer) as a
checkpoint folder in both published layouts, alternating between configs. Tiny datasets drawn
from the synthetic scenes are written in each config's real formats and folder layout (COCO json,
RefCOCO pickle + instances, Flickr30k-style JSON Lines, DocVQA JSON Lines), and the configs' own
``data/...`` paths are pointed at them."""
import json
import pickle
import random
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

import florence.engine  # noqa: F401
from florence.data.writers import write_coco
from florence.data.synthetic import make_scene
from florence.engine import Florence2Model, load_config
from florence.task import get_task

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs" / "finetune").glob("*.py"))
SIZE = 96


def _scenes(folder: Path, n: int, seed: int):
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        scene = make_scene(random.Random(seed * 100 + i), SIZE)
        name = f"{seed}_{i:03d}.jpg"
        scene.image.save(folder / name)
        out.append((i + 1, name, scene))
    return out


def _coco(root: Path, split: str, images_dir: str, seed: int):
    scenes = _scenes(root / "coco" / images_dir, 4, seed)
    cats = sorted({s.category for _, _, sc in scenes for s in sc.shapes})
    images = [dict(id=i, file_name=name, width=SIZE, height=SIZE) for i, name, _ in scenes]
    instances, captions, refs = [], [], []
    for i, _, sc in scenes:
        for s in sc.shapes:
            x1, y1, x2, y2 = s.box
            instances.append(dict(id=len(instances) + 1, image_id=i, category_id=cats.index(s.category) + 1,
                                  bbox=[x1, y1, x2 - x1, y2 - y1], area=(x2 - x1) * (y2 - y1), iscrowd=0,
                                  segmentation=[list(s.polygon)]))
            refs.append(dict(ref_id=len(refs), ann_id=len(instances), image_id=i, split=split,
                             sentences=[{"sent": f"the {s.category}"}]))
        captions += [dict(id=len(captions) + 1, image_id=i, caption=sc.caption(d)) for d in (0, 1)]
    categories = [dict(id=k + 1, name=c) for k, c in enumerate(cats)]
    ann = root / "coco" / "annotations"
    ann.mkdir(parents=True, exist_ok=True)
    name = "2017" if images_dir.endswith("2017") else "2014"
    if name == "2017":
        (ann / f"instances_{split}2017.json").write_text(json.dumps(
            dict(images=images, annotations=instances, categories=categories)))
        (ann / f"captions_{split}2017.json").write_text(json.dumps(dict(images=images, annotations=captions)))
    return images, instances, categories, refs


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    _coco(root, "train", "train2017", 1)
    _coco(root, "val", "val2017", 2)
    # RefCOCO: refs over COCO train2014 images, both splits in one refs file
    images, instances, categories, refs = _coco(root, "train", "train2014", 3)
    for r in refs[len(refs) // 2:]:
        r["split"] = "val"
    (root / "refcoco").mkdir()
    (root / "refcoco" / "refs(unc).p").write_bytes(pickle.dumps(refs))
    (root / "refcoco" / "instances.json").write_text(json.dumps(
        dict(images=images, annotations=instances, categories=categories)))
    # Flickr30k-style grounding and DocVQA-style JSON Lines
    for split, seed in (("train", 4), ("val", 5)):
        lines = [dict(image=name, caption=sc.caption(0),
                      phrases=[dict(phrase=f"a {s.colour} {s.kind}", boxes=[list(s.box)]) for s in sc.shapes])
                 for _, name, sc in _scenes(root / "flickr30k" / "images", 3, seed)]
        (root / "flickr30k" / f"{split}.jsonl").write_text("\n".join(map(json.dumps, lines)))
        lines = [dict(image=f"documents/{name}", task="<DOCVQA>", text_input="Which word is written?",
                      annotation=[sc.words[0].text, sc.words[0].text.lower()])
                 for _, name, sc in _scenes(root / "docvqa" / "documents", 3, seed + 10)]
        (root / "docvqa" / f"{split}.jsonl").write_text("\n".join(map(json.dumps, lines)))
    # a Roboflow / maestro export: prefix + suffix lines, images beside each split's annotations
    od = get_task("<OD>")
    for split, seed in (("train", 6), ("valid", 7), ("test", 8)):
        lines = []
        for _, name, sc in _scenes(root / "roboflow" / split, 3, seed):
            annotation = {"bboxes": [list(s.box) for s in sc.shapes], "labels": [s.category for s in sc.shapes]}
            lines.append(dict(image=name, prefix="<OD>", suffix=od.encode_target(annotation, (SIZE, SIZE))))
            lines.append(dict(image=name, prefix="Which word is written?", suffix=sc.words[0].text))
        (root / "roboflow" / split / "annotations.jsonl").write_text("\n".join(map(json.dumps, lines)))
    # Roboflow's COCO export, written by florence's own COCO writer (images beside the json)
    for split, seed in (("train", 9), ("valid", 10), ("test", 11)):
        scenes = _scenes(root / "roboflow_coco" / "source", 3, seed)
        items = [dict(image=str(root / "roboflow_coco" / "source" / name), image_size=(SIZE, SIZE), task="<OD>",
                      annotation={"bboxes": [list(s.box) for s in sc.shapes], "labels": [s.category for s in sc.shapes]})
                 for _, name, sc in scenes]
        coco = write_coco(items, root / "roboflow_coco" / split / "_annotations.coco.json")
        coco["categories"].insert(0, dict(id=0, name="shapes", supercategory="none"))  # as Roboflow writes it
        (root / "roboflow_coco" / split / "_annotations.coco.json").write_text(json.dumps(coco))
    return root


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """The tiny model as a pretrained checkpoint folder, in both published layouts."""
    torch.manual_seed(0)
    tiny = Florence2Model(model=dict(preset="tiny"),
                          tokenizer=dict(texts_from="florence.data.synthetic:vocabulary_texts", vocab_size=300))
    folders = {}
    for layout in ("microsoft", "native"):
        folders[layout] = tmp_path_factory.mktemp(layout)
        tiny.export(folders[layout], layout=layout)
    return folders


def _localise(node, root: Path):
    """Point the config's relative ``data/...`` paths into the test's data folder."""
    if isinstance(node, dict):
        return {k: _localise(v, root) for k, v in node.items()}
    if isinstance(node, list):
        return [_localise(v, root) for v in node]
    if isinstance(node, str) and node.startswith("data/"):
        return str(root / node[len("data/"):])
    return node


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_finetune_config_trains_and_evaluates(path, data_root, checkpoints, tmp_path):
    text = path.read_text()
    assert "Command:" in text and "Expected" in text
    cfg = Config.fromfile(str(path))
    assert cfg.model.pretrained.startswith("microsoft/Florence-2-")  # the real checkpoint by default
    layout = "microsoft" if CONFIGS.index(path) % 2 == 0 else "native"
    cfg.model.update(pretrained=str(checkpoints[layout]), generation=dict(num_beams=1, max_new_tokens=16))
    for key in ("train_dataloader", "val_dataloader"):
        loader = cfg[key]
        loader.update(batch_size=2, num_workers=0, persistent_workers=False)
        loader.dataset = _localise(loader.dataset.to_dict(), data_root)
        loader.dataset["image_size"] = 64
    cfg.test_dataloader = cfg.val_dataloader
    cfg.work_dir = str(tmp_path)
    cfg.train_cfg.update(max_iters=4, val_interval=10 ** 6)
    cfg.param_scheduler[0].end = 2
    cfg.param_scheduler[1].update(begin=2, end=4, T_max=2)
    cfg.default_hooks.checkpoint.interval = 4
    cfg.default_hooks.logger.interval = 1
    for hook in cfg.custom_hooks:
        if getattr(hook["type"], "__name__", hook["type"]) == "ProgressBarHook":
            hook["disable"] = True
    runner = Runner.from_cfg(cfg)
    runner.train()
    losses = runner.message_hub.get_scalar("train/loss").data[0]
    assert len(losses) == 4 and all(torch.isfinite(torch.tensor(losses)))
    metrics = runner.test()
    tasks = {s["task"] for d in runner.test_dataloader.dataset.datasets for s in d}
    assert tasks and all(any(k.startswith(t.strip("<>").lower() + "/") for k in metrics) for t in tasks), metrics


def test_data_root_option_moves_every_dataset_path():
    """``--cfg-options data_root=DIR`` (tools/train.py and tools/test.py load configs this way)
    points all of a config's dataset paths at DIR, not just the variable."""
    cfg = load_config(str(ROOT / "configs" / "finetune" / "florence2_base_roboflow.py"),
                      {"data_root": "/datasets/cars", "model.pretrained": "/ckpt/base"})
    files = [d.ann_file for key in ("train_dataloader", "val_dataloader", "test_dataloader")
             for d in cfg[key].dataset.datasets]
    assert files == [f"/datasets/cars/{split}/annotations.jsonl" for split in ("train", "valid", "test")]
    assert cfg.data_root == "/datasets/cars" and cfg.model.pretrained == "/ckpt/base"
    untouched = load_config(str(ROOT / "configs" / "finetune" / "florence2_base_roboflow.py"))
    assert untouched.train_dataloader.dataset.datasets[0].ann_file == "data/roboflow/train/annotations.jsonl"


def test_a_streamed_evaluation_dataset_is_refused_when_the_config_loads():
    """A stream never ends, so an evaluation loop over one would never finish: load_config says so."""
    main = str(ROOT / "configs" / "florence2" / "florence2_tiny_synthetic.py")
    stream = dict(type="MultiTaskStream", datasets=[dict(type="ShardedDataset", path="shards/")])
    with pytest.raises(ValueError, match="val_dataloader streams .MultiTaskStream never ends.*map-style"):
        load_config(main, {"val_dataloader.dataset": stream})
    assert load_config(main, {"train_dataloader.dataset": stream}).train_dataloader.dataset.type == "MultiTaskStream"
