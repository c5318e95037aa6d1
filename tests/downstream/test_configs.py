"""Every config in configs/downstream/ builds at its real size, and runs at toy scale: the real config
file with command-line overrides (a tiny DaViT initialised from a Florence-2 checkpoint folder,
tiny images, the synthetic COCO / ADE20K sets of conftest.py) trains 2 iterations with florence's
tools/train.py and is evaluated from the checkpoint it wrote with florence's tools/test.py (the base
configs; each large one is shown to differ from its base twin only in the tower). One mmdet
and one mmseg config also run with mmdet's and mmseg's own tools/train.py and tools/test.py (installed
with their pip packages under ``<package>/.mim/tools/``)."""
import importlib
import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from florence.downstream import Florence2DaViT, load_tower_state_dict

ROOT = Path(__file__).resolve().parents[2]
FOLDER = ROOT / "configs" / "downstream"
CONFIGS = sorted(FOLDER.glob("*.py"))
BASE = [p for p in CONFIGS if p.name.startswith("florence2-base_")]  # each has a -large twin
FRAGMENTS = sorted((FOLDER / "_base_").glob("*.py"))
TINY_DIMS = [32, 64, 128, 256]
SHRINK = 8  # image scales / 8: 1333x800 -> 166x100, 512x512 crops -> 64x64


def _load(module_path):
    spec = importlib.util.spec_from_file_location(Path(module_path).stem, module_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


train_tool, test_tool = _load(ROOT / "tools" / "train.py"), _load(ROOT / "tools" / "test.py")


def library(cfg) -> str:
    return cfg.default_scope  # "mmdet" or "mmseg"


def _fmt(v) -> str:
    """A value as mmengine's DictAction reads it back from the command line."""
    if isinstance(v, (list, tuple)):
        inner = ",".join(_fmt(x) for x in v)
        return f"[{inner}]" if isinstance(v, list) else f"({inner})"
    return str(v)


def _shrink(node, path, out):
    """Overrides dividing every image scale and crop size in a pipeline by SHRINK."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("scale", "crop_size") and isinstance(value, (tuple, list)):
                out[f"{path}.{key}"] = tuple(v // SHRINK for v in value)
            elif key == "scales":
                out[f"{path}.{key}"] = [tuple(v // SHRINK for v in s) for s in value]
            else:
                _shrink(value, f"{path}.{key}", out)
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            _shrink(value, f"{path}.{i}", out)


def tiny_options(cfg, coco_root: Path, ade_root: Path, checkpoint) -> list:
    """Command-line overrides that turn a real downstream config into its toy-scale version."""
    o = {"model.backbone.arch": "tiny", "model.backbone.init_cfg.checkpoint": str(checkpoint),
         "default_hooks.logger.interval": 1, "train_cfg.val_begin": 1000}  # evaluation: tools/test.py
    channels = [TINY_DIMS[i] for i in cfg.model.backbone.out_indices]
    for key in ("train_dataloader", "val_dataloader", "test_dataloader"):
        o[f"{key}.num_workers"], o[f"{key}.persistent_workers"] = 0, False
        _shrink(cfg[key].dataset.pipeline, f"{key}.dataset.pipeline", o)
    if library(cfg) == "mmdet":
        o["model.neck.in_channels"] = channels
        for key in ("train_dataloader", "val_dataloader", "test_dataloader"):
            o[f"{key}.dataset.data_root"] = str(coco_root) + "/"
        for key in ("val_evaluator", "test_evaluator"):
            o[f"{key}.ann_file"] = str(coco_root / "annotations" / "instances_val2017.json")
        o["train_cfg.max_epochs"] = 1  # 4 images of batch 2: 2 iterations
        if cfg.model.get("num_queries", 0) > 50:  # DINO picks its queries among the encoder's tokens: >= 85 here
            o["model.num_queries"] = 50
        if "rcnn" in cfg.model.test_cfg:
            # after 2 iterations no score passes 0.05: keep the 10 best boxes whatever their score, so COCO eval
            # runs; fewer RoIs through the 4-conv mask head (most of Mask R-CNN's time at this scale)
            o.update({"model.test_cfg.rcnn.score_thr": 0.0, "model.test_cfg.rcnn.max_per_img": 10,
                      "model.train_cfg.rcnn.sampler.num": 64})
    else:
        o["model.decode_head.in_channels"] = channels
        o["model.auxiliary_head.in_channels"] = TINY_DIMS[cfg.model.auxiliary_head.in_index]
        o["model.data_preprocessor.size"] = tuple(s // SHRINK for s in cfg.model.data_preprocessor.size)
        for key in ("train_dataloader", "val_dataloader", "test_dataloader"):
            o[f"{key}.dataset.data_root"] = str(ade_root)
        o.update({"train_cfg.max_iters": 2, "default_hooks.checkpoint.interval": 2})
    return [f"{k}={_fmt(v)}" for k, v in o.items()]


def metric_keys(cfg) -> set:
    if library(cfg) == "mmseg":
        return {"mIoU", "aAcc", "mAcc"}
    metrics = cfg.val_evaluator.metric
    return {f"coco/{m}_mAP" for m in ([metrics] if isinstance(metrics, str) else metrics)}


# ---- real sizes --------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", FRAGMENTS, ids=lambda p: p.stem)
def test_fragments_load_and_explain_themselves(path):
    assert path.read_text().lstrip().startswith('"""'), "every config opens with a docstring"
    Config.fromfile(str(path))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_builds_at_its_real_size(path):
    text = path.read_text()
    assert text.lstrip().startswith('"""')
    for field in ("Trains:", "Data:", "Expected:", "Time:", "Command"):
        assert field in text, f"{path.name}: the docstring lacks {field}"
    cfg = Config.fromfile(str(path))
    size = "large" if path.name.startswith("florence2-large") else "base"
    backbone = cfg.model.backbone
    assert backbone.type is Florence2DaViT or backbone.type.__name__ == "Florence2DaViT"
    assert backbone.arch == size and backbone.init_cfg.checkpoint == f"microsoft/Florence-2-{size}"
    registry = importlib.import_module(f"{library(cfg)}.registry")
    from mmengine.registry import init_default_scope

    init_default_scope(library(cfg))
    with torch.device("meta"):  # the real sizes, without allocating ~0.1-0.5B parameters
        model = registry.MODELS.build(cfg.model)
    assert isinstance(model.backbone, Florence2DaViT) and model.backbone.vision_tower.num_features == (
        1024 if size == "base" else 2048)
    # the neck / heads read the channels the backbone gives
    channels = model.backbone.out_channels
    if library(cfg) == "mmdet":
        assert list(cfg.model.neck.in_channels) == channels
    else:
        assert list(cfg.model.decode_head.in_channels) == channels
        aux = cfg.model.auxiliary_head
        assert aux.in_channels == model.backbone.out_channels[aux.in_index]


def _flat(node, prefix=""):
    if isinstance(node, dict):
        return {k: v for key, value in node.items() for k, v in _flat(value, f"{prefix}.{key}".lstrip(".")).items()}
    if isinstance(node, (list, tuple)):
        return {k: v for i, value in enumerate(node) for k, v in _flat(value, f"{prefix}[{i}]").items()}
    return {prefix: node}


@pytest.mark.parametrize("path", BASE, ids=lambda p: p.stem)
def test_a_large_config_is_its_base_twin_with_the_large_tower(path):
    """The toy runs below train the base configs only: a large config differs from its base twin in
    the tower (arch, checkpoint, gradient checkpointing: its own test) and the channels read from it,
    which the real-size test above checks and the toy scale overrides; nothing else."""
    large = path.with_name(path.name.replace("florence2-base_", "florence2-large_"))
    base, big = _flat(Config.fromfile(str(path)).to_dict()), _flat(Config.fromfile(str(large)).to_dict())
    differ = {k for k in set(base) | set(big) if base.get(k) != big.get(k)}
    allowed = {"model.backbone.arch", "model.backbone.init_cfg.checkpoint", "model.backbone.with_cp",
               "model.auxiliary_head.in_channels"}
    assert differ and all(k in allowed or k.startswith(("model.neck.in_channels[", "model.decode_head.in_channels["))
                          for k in differ), sorted(differ)


# ---- toy scale -----------------------------------------------------------------------------------------
@pytest.fixture
def unformatted_config_text(monkeypatch):
    """The runner logs and dumps its config, formatted by yapf: ~3 s a time for these configs, most of a
    toy run. Here the text goes out unformatted (the OpenMMLab-tools test below keeps yapf)."""
    monkeypatch.setattr("mmengine.config.config.FormatCode", lambda text, **kw: (text, False))


def _last_checkpoint(work_dir: Path) -> Path:
    return Path((work_dir / "last_checkpoint").read_text().strip())


@pytest.mark.parametrize("path", BASE, ids=lambda p: p.stem)
def test_tiny_config_trains_and_evaluates_with_florence_tools(path, coco_root, ade_root, oracle, tmp_path,
                                                              unformatted_config_text):
    cfg = Config.fromfile(str(path))
    checkpoint = oracle[BASE.index(path) % 2 + 1]  # the native and the Microsoft layout, alternately
    options = tiny_options(cfg, coco_root, ade_root, checkpoint)
    runner = train_tool.main([str(path), "--work-dir", str(tmp_path / "train"), "--cfg-options", *options])
    losses = runner.message_hub.get_scalar("train/loss").data[0]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses), losses

    ckpt = _last_checkpoint(tmp_path / "train")
    out = tmp_path / "metrics.json"
    test_tool.main([str(path), str(ckpt), "--work-dir", str(tmp_path / "test"), "--out", str(out),
                    "--cfg-options", *options])
    metrics = json.loads(out.read_text())["metrics"]
    assert metric_keys(cfg) <= set(metrics), metrics
    assert all(isinstance(metrics[k], float) and math.isfinite(metrics[k]) for k in metric_keys(cfg)), metrics

    # the detector's checkpoint (written by mmengine's runner with our hook) loads under weights_only and
    # initialises a backbone with the trained tower
    tower, layout = load_tower_state_dict(ckpt)
    trained = runner.model.backbone.vision_tower.state_dict()
    assert layout == "florence" and tower.keys() == trained.keys()
    assert all(torch.equal(tower[k], trained[k]) for k in trained)


def _openmmlab_tool(lib: str, name: str) -> Path:
    tool = Path(importlib.import_module(lib).__file__).parent / ".mim" / "tools" / name
    assert tool.is_file(), f"{lib}'s pip package ships no {tool}"
    return tool


def _test_log_metrics(work_dir: Path) -> dict:
    """mmengine's LoggerHook writes a test run's metrics to <work_dir>/<timestamp>/<timestamp>.json."""
    logs = sorted(work_dir.glob("*/*.json"))
    assert logs, f"no metrics log in {work_dir}"
    return json.loads(logs[-1].read_text().splitlines()[-1])


# mmdet's / mmseg's train.py, then test.py on the checkpoint it wrote, run as scripts (``__main__``) in one
# fresh process; the config text goes out unformatted as in unformatted_config_text (only for speed)
RUN_TOOLS = """
import runpy, sys
from pathlib import Path
import mmengine.config.config
mmengine.config.config.FormatCode = lambda text, **kw: (text, False)
train, test, config, work_dir, *options = sys.argv[1:]
sys.argv = [train, config, "--work-dir", work_dir + "/train", "--cfg-options", *options]
runpy.run_path(train, run_name="__main__")
checkpoint = (Path(work_dir) / "train" / "last_checkpoint").read_text().strip()
sys.argv = [test, config, checkpoint, "--work-dir", work_dir + "/test", "--cfg-options", *options]
runpy.run_path(test, run_name="__main__")
"""


@pytest.mark.parametrize("name", ["florence2-base_mask-rcnn_fpn_8xb2-1x_coco.py",
                                  "florence2-base_upernet_8xb2-160k_ade20k-512x512.py"])
def test_tiny_config_runs_with_openmmlab_tools(name, coco_root, ade_root, oracle, tmp_path):
    path = FOLDER / name
    cfg = Config.fromfile(str(path))
    lib = library(cfg)
    tools = [str(_openmmlab_tool(lib, "train.py")), str(_openmmlab_tool(lib, "test.py"))]
    options = tiny_options(cfg, coco_root, ade_root, oracle[1])
    run = subprocess.run([sys.executable, "-c", RUN_TOOLS, *tools, str(path), str(tmp_path), *options], cwd=tmp_path,
                         capture_output=True, text=True)
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    metrics = _test_log_metrics(tmp_path / "test")
    assert metric_keys(cfg) <= set(metrics), metrics
