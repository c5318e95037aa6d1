"""Several classes or phrases of one image in one call: one padded batch over the image encoded once,
one merged result, equal to the calls one class at a time (the regions in order, scores within float
summation order)."""
import json

import pytest
from PIL import Image

import florence
from florence.task import Shape, TaskError
from helpers import same_result

OVD, GROUNDING = "<OPEN_VOCABULARY_DETECTION>", "<CAPTION_TO_PHRASE_GROUNDING>"
GEN = dict(max_new_tokens=40, num_beams=1)


@pytest.fixture(scope="module")
def pipe(trained_folder):
    return florence.pipeline(trained_folder[0], dtype="float32")


@pytest.fixture(scope="module")
def scenes(trained_folder):
    return [s["image"] for s in trained_folder[1]]


def one_at_a_time(pipe, image, task, queries):
    """The merged result built by hand from one call per query: regions in order, an unlabelled
    region labelled with its query."""
    task = florence.get_task(task)
    outs = [pipe(image, task.token, q, **GEN)[task.token] for q in queries]
    regions = [r if r.label else Shape(r.kind, r.coords, q, r.score)
               for out, q in zip(outs, queries) for r in task.regions(out)]
    base = next((o for o in outs if "scores" in o), outs[0])
    return task.with_regions(base, regions), outs


@pytest.mark.parametrize("task", [OVD, GROUNDING, "<REFERRING_EXPRESSION_SEGMENTATION>"])
def test_several_queries_equal_one_call_per_query_merged(pipe, scenes, task):
    queries = ["red triangle", "a blue square", "green circle"]
    want, outs = one_at_a_time(pipe, scenes[0], task, queries)
    got = pipe(scenes[0], task, queries, **GEN)[task]
    same_result(got, want)
    n = len(florence.get_task(task).regions(got))
    assert n == sum(len(florence.get_task(task).regions(o)) for o in outs)
    if task == OVD:  # the model was trained on it: regions to merge, each with a score
        assert n >= 3 and len(got["scores"]) == n


def test_the_image_is_encoded_once_for_all_its_queries(pipe, scenes):
    seen = []
    handle = pipe.model.image_proj_norm.register_forward_hook(lambda m, i, o: seen.append(o.shape[0]))
    try:
        pipe(scenes[0], OVD, ["a", "b", "c", "d"], **GEN)
        assert seen == [1]  # one image through the tower, four prompts decoded
        seen.clear()
        out = pipe(scenes[:2], OVD, [["red triangle", "blue circle"], "green square"], **GEN)
        assert seen == [2] and len(out) == 2
    finally:
        handle.remove()
    same_result(out[1][OVD], pipe(scenes[1], OVD, "green square", **GEN)[OVD])
    same_result(out[0][OVD], one_at_a_time(pipe, scenes[0], OVD, ["red triangle", "blue circle"])[0])


def test_tasks_that_take_one_input_refuse_several(pipe, scenes):
    assert florence.get_task(OVD).takes_several_inputs and not florence.get_task("<OD>").takes_several_inputs
    assert not florence.get_task("<REGION_TO_CATEGORY>").takes_several_inputs
    with pytest.raises(TaskError, match="takes one input per image, got 2"):
        pipe(scenes[0], "<OD>", ["a", "b"], **GEN)
    with pytest.raises(ValueError, match="2 images but 3 text inputs"):
        pipe(scenes[:2], OVD, ["a", "b", "c"], **GEN)


def test_infer_repeats_text_for_several_queries(pipe, scenes, trained_folder, tmp_path):
    from florence.cli import main

    scenes[0].save(tmp_path / "a.png")
    out = tmp_path / "r.jsonl"
    assert main(["infer", str(tmp_path / "a.png"), "--model", str(trained_folder[0]), "--task", OVD,
                 "--text", "red triangle", "--text", "blue circle", "--out", str(out), "--max-new-tokens", "40",
                 "--num-beams", "1", "--dtype", "float32"]) == 0
    got = json.loads(out.read_text())["result"]
    assert got["bboxes"]
    same_result(got, pipe(Image.open(tmp_path / "a.png").convert("RGB"), OVD, ["red triangle", "blue circle"], **GEN)[OVD])
