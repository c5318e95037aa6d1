"""The jobs a config runs, as functions: :func:`train`, :func:`evaluate` and :func:`export_checkpoint`
(``florence train / test / export`` and ``tools/train.py`` / ``tools/test.py`` call them), and how a
config is read (:func:`load_config`: ``--cfg-options`` and ``data_root=``).

>>> from florence.engine import evaluate, train
>>> runner = train("configs/florence2/florence2_tiny_synthetic.py", work_dir="work_dirs/tiny")
>>> rows = evaluate("configs/florence2/florence2_tiny_synthetic.py", "work_dirs/tiny/iter_600.pth")
"""
from __future__ import annotations

import contextlib
import json
import os
import re

__all__ = ["train", "evaluate", "export_checkpoint", "load_config", "trained_image_size", "explain_missing_extras",
           "missing_extra"]

# packages that only an extra installs, and the extra (setup.py) that does
_EXTRA_OF = {"mmcv": "downstream", "mmdet": "downstream", "mmseg": "downstream", "ftfy": "downstream",
             "deepspeed": "deepspeed"}


# where an import error's message names the module that is missing (when its ``name`` is not set)
_MISSING_IN_MESSAGE = re.compile(r"No module named '([\w.]+)'|import of ([\w.]+) halted")


def missing_extra(error: BaseException):
    """``(package, extra)`` when ``error`` comes from a package that only an extra installs, else None.
    The module that is actually missing is the innermost import error of the exception chain: mmengine's
    lazy imports re-raise "Failed to import florence.engine.deepspeed in CONFIG ..." around the
    ModuleNotFoundError of ``deepspeed`` itself, and that outer message names the importer first."""
    chain = []
    while error is not None and error not in chain:
        chain.append(error)
        error = error.__cause__ or error.__context__
    for e in reversed(chain):  # innermost first
        if not isinstance(e, ImportError):
            continue
        found = _MISSING_IN_MESSAGE.search(str(e))
        name = e.name or (next(g for g in found.groups() if g) if found else None)
        if name:
            package = name.partition(".")[0]
            extra = _EXTRA_OF.get(package)
            return (package, extra) if extra else None
    return None


@contextlib.contextmanager
def explain_missing_extras(config):
    """Around loading and running ``config``: a package of an extra that is not installed (mmdet /
    mmseg / mmcv for ``configs/downstream/``, DeepSpeed for a ``strategy``), imported when the
    config loads or when mmengine builds its lazily imported objects, stops the run with the
    command that installs the extra instead of a bare ModuleNotFoundError."""
    try:
        yield
    except ModuleNotFoundError as e:
        found = missing_extra(e)
        if found is None:
            raise
        package, extra = found
        raise SystemExit(f"{config} needs the {extra} extra, which is not installed ({package} cannot be imported): "
                         f"bash tools/install.sh --{extra}  (or: pip install -e '.[{extra}]')") from e


def load_config(path: str, options: dict | None = None):
    """A config file with ``--cfg-options`` merged in. ``data_root=DIR`` among the options also moves
    every path of the config that starts with the config's own ``data_root`` under DIR (mmengine
    would change the variable only, after the paths were built from it), so one option points a
    config at a dataset folder: ``--cfg-options data_root=/data/my-roboflow-export``."""
    from mmengine.config import Config

    cfg = Config.fromfile(path)
    options = dict(options or {})
    old, new = cfg.get("data_root"), options.get("data_root")
    if isinstance(old, str) and isinstance(new, str) and old:
        def reroot(node):
            if isinstance(node, str):
                return os.path.join(new, node[len(old):].lstrip("/")) if node.startswith(old) else node
            if isinstance(node, dict):
                for key in node:
                    node[key] = reroot(node[key])
                return node
            if isinstance(node, (list, tuple)):
                return type(node)(reroot(v) for v in node)
            return node

        for key in list(cfg.keys()):
            if key != "data_root":
                cfg[key] = reroot(cfg[key])
    cfg.merge_from_dict(options)
    for split in ("val", "test"):  # a stream never ends: an evaluation loop over one would never finish
        dataset = (cfg.get(f"{split}_dataloader") or {}).get("dataset") or {}
        kind = dataset.get("type") if isinstance(dataset, dict) else None
        if getattr(kind, "__name__", kind) in ("MultiTaskStream", "ShardedDataset"):
            raise ValueError(f"{path}: {split}_dataloader streams ({getattr(kind, '__name__', kind)} never ends): "
                             "evaluate on a map-style dataset (MultiTaskDataset of adapters); streams are for training")
    return cfg


def trained_image_size(cfg) -> int:
    """The image side a config's training data resizes to (768, the published one, if it says none)."""
    dataset = (cfg.get("train_dataloader") or {}).get("dataset") or {}
    return int(dataset.get("image_size") or 768)


def export_checkpoint(cfg, checkpoint, out_dir, layout: str = "native", image_size: int | None = None,
                      cfg_options: dict | None = None) -> int:
    """Build ``cfg.model`` (``cfg``: a loaded config, or a config file read with ``cfg_options``),
    load a checkpoint of :func:`train` into it (strictly) and export it as a Florence-2 folder
    (:meth:`Florence2Model.export`) for ``image_size`` (default: the side the config's training data
    uses); returns that side."""
    from mmengine.runner.checkpoint import load_checkpoint

    from ..registry import MODELS

    if isinstance(cfg, (str, os.PathLike)):
        cfg = load_config(str(cfg), cfg_options)
    model = MODELS.build(cfg.model)
    load_checkpoint(model, str(checkpoint), map_location="cpu", strict=True)
    size = image_size or trained_image_size(cfg)
    model.export(out_dir, layout=layout, image_size=size)
    return size


def _work_dir(cfg, config: str, work_dir) -> str:
    return work_dir or cfg.get("work_dir") or os.path.join("work_dirs", os.path.splitext(os.path.basename(config))[0])


def train_config(config: str, *, work_dir: str | None = None, resume: str | None = None, amp: bool = False,
                 launcher: str = "none", cfg_options: dict | None = None):
    """The config :func:`train` runs: ``config`` with ``cfg_options`` merged in, its work dir
    (default ``work_dirs/<config name>``), ``amp`` and ``resume`` applied."""
    cfg = load_config(config, cfg_options)  # data_root=DIR moves the config's dataset paths too
    cfg.work_dir = _work_dir(cfg, config, work_dir)
    if amp:
        cfg.optim_wrapper.type = "florence.AutocastOptimWrapper"  # scoped: found from mmdet/mmseg configs too
        cfg.optim_wrapper.setdefault("dtype", "auto")  # bf16 where native, else float32 (logged)
    cfg.launcher = launcher
    if resume == "auto":
        cfg.resume, cfg.load_from = True, None
    elif resume is not None:
        cfg.resume, cfg.load_from = True, resume
    return cfg


def train(config: str, *, work_dir: str | None = None, resume: str | None = None, amp: bool = False,
          launcher: str = "none", cfg_options: dict | None = None):
    """Train (and evaluate, as the config says) on mmengine's Runner; returns the runner.

    Args:
        config: a config file (``configs/``).
        work_dir: where logs and checkpoints go (default: the config's, else ``work_dirs/<config name>``).
        resume: a checkpoint to continue from, or ``"auto"``: the work dir's latest (iteration,
            optimizer, scheduler, data order and RNG state).
        amp: bf16 autocast where the device computes bf16 natively (float32 elsewhere, logged).
        launcher: ``"none"``, or ``"pytorch"`` under torchrun (``tools/dist_train.sh``; gloo on CPU).
        cfg_options: config values to override, e.g. ``{"train_cfg.max_iters": 100}``.

    Configs with a ``strategy`` (DeepSpeed ZeRO, :mod:`florence.engine.deepspeed`) run on mmengine's
    FlexibleRunner. A package of an extra that is not installed stops the run with the command that
    installs it.
    """
    from mmengine.runner import FlexibleRunner, Runner

    from .distributed import init_process_group
    from .runtime import register

    register()  # the file backend the runtime configs name
    with explain_missing_extras(config):  # e.g. a downstream config without mmdet: the install command
        cfg = train_config(config, work_dir=work_dir, resume=resume, amp=amp, launcher=launcher,
                           cfg_options=cfg_options)
        if "strategy" in cfg:  # DeepSpeed: its strategy starts the process group (CPU or GPU)
            runner = FlexibleRunner.from_cfg(cfg)
        else:
            init_process_group(launcher, cfg.get("env_cfg", {}).get("dist_cfg", {}).get("backend", "gloo"))
            runner = Runner.from_cfg(cfg)
        runner.train()
    return runner


def evaluate(config: str, checkpoint: str, *, out: str | None = None, work_dir: str | None = None,
             cfg_options: dict | None = None, engine: str = "local", address: str | None = None,
             replicas: int = 1, cpus_per_replica: float = 1, gpus_per_replica: float = 0) -> list[dict]:
    """Evaluate ``checkpoint`` on the config's test set; returns the metric table, one row per
    (task, metric) with its value, samples and invalid outputs (the run's log prints it), and
    writes ``{"metrics", "table"}`` as JSON to ``out`` when given. With ``engine="ray"`` the model's
    generation runs on Ray Data (:class:`~florence.engine.loops.RayTestLoop`: ``replicas`` copies of
    the model on the cluster at ``address``), giving the same table."""
    from ..cluster import check_engine

    check_engine("evaluate", engine, replicas, cpus_per_replica, gpus_per_replica)
    from mmengine.runner import Runner

    from .runtime import register

    register()
    with explain_missing_extras(config):
        cfg = load_config(config, cfg_options)
        cfg.work_dir = _work_dir(cfg, config, work_dir)
        cfg.load_from, cfg.resume = checkpoint, False
        if engine == "ray":
            cfg.test_cfg = dict(type="florence.RayTestLoop", fp16=(cfg.get("test_cfg") or {}).get("fp16", False),
                                address=address, replicas=replicas, cpus_per_replica=cpus_per_replica,
                                gpus_per_replica=gpus_per_replica)
        runner = Runner.from_cfg(cfg)
        metrics = runner.test()
    rows = [row for m in runner.test_evaluator.metrics for row in getattr(m, "table", [])]
    if out:
        with open(out, "w") as f:
            # numpy scalars (mmseg's metrics) as plain numbers
            json.dump({"metrics": metrics, "table": rows}, f, indent=1, default=lambda x: x.item())
    return rows
