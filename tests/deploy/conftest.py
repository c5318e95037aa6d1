"""The deploy tests' model: the main job's config at toy scale (64 px images), strong random weights
(varied outputs), saved as a training checkpoint and exported with ``florence export CONFIG CHECKPOINT
OUT_DIR``: the native folder the transformers and ONNX tests start from."""
import pytest
import torch


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """The main job's model (its config at toy scale, weights strong random: varied outputs) saved
    as a training checkpoint, then ``florence export CONFIG CHECKPOINT OUT_DIR``."""
    from engine.conftest import small_config
    from florence.cli import main
    from florence.registry import MODELS

    from helpers import randomize_

    work = tmp_path_factory.mktemp("export")
    cfg = small_config(work, image_size=64)
    cfg.dump(str(work / "config.py"))
    model = MODELS.build(cfg.model)
    randomize_(model.model)
    torch.save({"state_dict": model.state_dict(), "meta": {}}, work / "iter_1.pth")
    assert main(["export", str(work / "config.py"), str(work / "iter_1.pth"), str(work / "out")]) == 0
    return work / "out", model
