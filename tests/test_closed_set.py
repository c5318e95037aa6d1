"""Closed-set labels: ``pipe(img, task, classes=[...])`` constrains decoding so that every item is one
of the classes followed by its location tokens; an output that already keeps to the classes is
left as it was (the same token ids), greedy and with beams."""
import json
import re

import pytest

import florence
from florence.generation import ClosedSetLabelsLogitsProcessor
from florence.task import TaskError

GEN = dict(max_new_tokens=40, num_beams=1)


def well_formed(text: str, classes, locations: int = 4, cut: bool = False) -> bool:
    """``</s><s>`` then items ``class (<loc> x locations)+``, then ``</s>``; with ``cut`` (the
    generation reached max_new_tokens, whose last token transformers forces to ``</s>``) the last
    item may be unfinished."""
    body = text.replace("<pad>", "")
    assert body.startswith("</s><s>") and body.endswith("</s>"), body
    body = body[len("</s><s>"):-len("</s>")]
    label = "|".join(re.escape(c) for c in sorted(classes, key=len, reverse=True))
    item = f"(?:{label})(?:(?:<loc_\\d+>){{{locations}}})+"
    last = f"(?:(?:{label})(?:<loc_\\d+>)*)?" if cut else ""
    return re.fullmatch(f"(?:{item})*{last}", body) is not None


def reached_the_limit(pipe, text: str, max_new_tokens: int) -> bool:
    ids = pipe.processor.tokenizer(text.replace("<pad>", ""), add_special_tokens=False)["input_ids"]
    return len(ids) == 1 + max_new_tokens


@pytest.fixture(scope="module")
def random_pipe(tiny_folder):
    return florence.pipeline(tiny_folder, dtype="float32")


@pytest.fixture(scope="module")
def pipe(trained_folder):
    return florence.pipeline(trained_folder[0], dtype="float32")


@pytest.mark.parametrize("num_beams", [1, 3])
def test_a_random_model_writes_only_the_classes_and_whole_boxes(random_pipe, num_beams):
    """A randomly initialised model writes anything; constrained, its every item is a class and
    whole boxes."""
    import numpy as np
    from PIL import Image

    image = Image.fromarray(np.random.default_rng(1).integers(0, 255, (48, 64, 3), dtype=np.uint8))
    classes = ["red circle", "blue square", "tree"]
    prompt = florence.get_task("<OD>").prompt()
    gen = dict(max_new_tokens=60, num_beams=num_beams)
    free, _ = random_pipe.generate_texts([image], [prompt], **gen)
    assert not well_formed(free[0], classes)  # what the constraint is for
    constrained = random_pipe._constrained({"classes": classes}, [florence.get_task("<OD>")], gen)
    texts, _ = random_pipe.generate_texts([image], [prompt], **constrained)
    assert well_formed(texts[0], classes, cut=reached_the_limit(random_pipe, texts[0], 60)), texts[0]
    out = random_pipe(image, "<OD>", classes=classes, **gen)["<OD>"]
    assert set(out["labels"]) <= set(classes)


@pytest.mark.parametrize("num_beams", [1, 3])
def test_an_output_already_in_the_classes_is_unchanged(pipe, trained_folder, num_beams):
    gen = dict(GEN, num_beams=num_beams)
    for sample in trained_folder[1][:4]:
        free = pipe(sample["image"], "<OD>", **gen)["<OD>"]
        assert len(free["labels"]) >= 2
        kept = pipe(sample["image"], "<OD>", classes=[*free["labels"], "purple star"], **gen)["<OD>"]
        assert kept == free
        narrowed = pipe(sample["image"], "<OD>", classes=[free["labels"][0], "purple star"], **gen)["<OD>"]
        assert narrowed["labels"] and set(narrowed["labels"]) <= {free["labels"][0], "purple star"}


def test_quads_take_eight_location_tokens(random_pipe):
    import numpy as np
    from PIL import Image

    image = Image.fromarray(np.random.default_rng(2).integers(0, 255, (48, 64, 3), dtype=np.uint8))
    task = florence.get_task("<OCR_WITH_REGION>")
    constrained = random_pipe._constrained({"classes": ["STOP", "EXIT"]}, [task], dict(max_new_tokens=60, num_beams=1))
    texts, _ = random_pipe.generate_texts([image], [task.prompt()], **constrained)
    assert well_formed(texts[0], ["STOP", "EXIT"], locations=8, cut=reached_the_limit(random_pipe, texts[0], 60)), \
        texts[0]


def test_what_classes_refuse(random_pipe, tiny_folder):
    image = "unused.png"
    with pytest.raises(TaskError, match="does not write 'label \\+ location tokens' items"):
        random_pipe(image, "<CAPTION>", classes=["a"])
    with pytest.raises(ValueError, match="list of strings"):
        random_pipe(image, "<OD>", classes="car,person")
    with pytest.raises(ValueError, match="one task's labels; this call has 2 tasks"):
        random_pipe([image, image], ["<OD>", "<DENSE_REGION_CAPTION>"], classes=["a"])
    tok = random_pipe.processor.tokenizer
    with pytest.raises(ValueError, match="must not contain '<'"):
        ClosedSetLabelsLogitsProcessor(tok, ["<loc_1>"], random_pipe.processor.location_token_ids)
    with pytest.raises(ValueError, match="non-empty strings"):
        ClosedSetLabelsLogitsProcessor(tok, ["car", " "], random_pipe.processor.location_token_ids)


def test_infer_takes_classes(pipe, trained_folder, tmp_path):
    from florence.cli import main

    trained_folder[1][0]["image"].save(tmp_path / "a.png")
    free = pipe(trained_folder[1][0]["image"], "<OD>", **GEN)["<OD>"]
    out = tmp_path / "r.jsonl"
    assert main(["infer", str(tmp_path / "a.png"), "--model", str(trained_folder[0]), "--task", "<OD>",
                 "--classes", f"{free['labels'][0]}, purple star", "--out", str(out), "--max-new-tokens", "40",
                 "--num-beams", "1", "--dtype", "float32"]) == 0
    got = json.loads(out.read_text())["result"]
    assert got["labels"] and set(got["labels"]) <= {free["labels"][0], "purple star"}
