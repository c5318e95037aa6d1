"""Task plugins through the entry-point mechanism: a third-party task with a new special token
runs end to end; broken plugins are reported by name and never stop the built-in tasks."""
import importlib
import textwrap
import warnings

import pytest
import torch
from PIL import Image

import florence
from florence.task import TaskError, plugin_errors, reload_tasks

COUNT_PLUGIN = '''
import re
import florence
from florence.task import Task

class Count(Task):
    """How many of a thing: target '<count>3</count>', output an int (None if unreadable)."""
    token, template, input_kind = "<COUNT>", "How many {input} are in the image?", "text"
    special_tokens, metrics = ("<count>", "</count>"), ("accuracy",)

    def encode_target(self, annotation, image_size):
        return f"<count>{int(annotation)}</count>"

    def decode_output(self, text, image_size, scores=None):
        m = re.search(r"<count>(\\d+)", text)
        return int(m.group(1)) if m else None

    def example(self, rng, image_size):
        return "cats", rng.randint(0, 9)

@florence.hookimpl
def florence_register_tasks():
    return [Count()]
'''


def install_plugin(root, dist, modules: dict, entry_points: dict, group: str = "florence.tasks"):
    """A minimal installed distribution: modules plus a dist-info with entry points in ``group``."""
    for name, code in modules.items():
        (root / f"{name}.py").write_text(textwrap.dedent(code))
    info = root / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    eps = "".join(f"{k} = {v}\n" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[{group}]\n{eps}")


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield tmp_path
    monkeypatch.undo()
    importlib.invalidate_caches()
    reload_tasks()


def test_a_metrics_only_plugin_loads_from_the_metrics_group(plugin_dir):
    """florence.metrics holds plugins that bring metrics and no task (florence's own metrics are one)."""
    code = ("import florence\n@florence.hookimpl\ndef florence_register_metrics():\n"
            "    return {'exact_length': lambda samples: {'exact_length': 1.0}}\n")
    install_plugin(plugin_dir, "florence_lengths", {"florence_lengths": code}, {"lengths": "florence_lengths"},
                   group="florence.metrics")
    reload_tasks()
    assert plugin_errors() == [] and "exact_length" in florence.list_metrics() and "cider" in florence.list_metrics()
    assert florence.get_metric("exact_length")([]) == {"exact_length": 1.0}


def test_get_task_by_token_or_name():
    assert florence.get_task("<OD>") is florence.get_task("od") is florence.get_task("OD")
    with pytest.raises(TaskError, match=r"unknown task .detect.*<CAPTION> \(caption\).*<OD> \(od\)"):
        florence.get_task("detect")


def test_third_party_task_with_new_token_runs_end_to_end(plugin_dir, tiny_folder):
    install_plugin(plugin_dir, "florence_count", {"florence_count": COUNT_PLUGIN}, {"count": "florence_count"})
    reload_tasks()
    task = florence.get_task("<COUNT>")
    assert florence.get_task("count") is task and plugin_errors() == []
    assert task.encode_target(3, (10, 10)) == "<count>3</count>"

    pipe = florence.pipeline(tiny_folder)
    tok, model = pipe.processor.tokenizer, pipe.model
    before = florence.Florence2ForConditionalGeneration.from_pretrained(tiny_folder).config.vocab_size
    new_ids = tok.convert_tokens_to_ids(["<count>", "</count>"])
    assert min(new_ids) >= before and model.config.vocab_size == len(tok) == before + 2
    assert model.language_model.lm_head.weight.shape[0] == len(tok)
    assert tok("<count>3</count>", add_special_tokens=False)["input_ids"][0] == new_ids[0]  # one token

    image = Image.new("RGB", (64, 48), "white")
    # the run goes through the new tokens: a logits processor makes the model say "<count>7</count>"
    target = tok("<count>7</count>", add_special_tokens=False)["input_ids"]

    class Force:
        def __call__(self, input_ids, scores):
            step = input_ids.shape[1] - 2  # after </s><s>
            if 0 <= step < len(target):
                scores = torch.full_like(scores, -1e9)
                scores[:, target[step]] = 0
            return scores
    from transformers import LogitsProcessorList
    out = pipe([image, image], "<COUNT>", "cats", max_new_tokens=len(target) + 2, num_beams=1,
               logits_processor=LogitsProcessorList([Force()]))
    assert out == [{"<COUNT>": 7}, {"<COUNT>": 7}]  # generated, decoded and parsed by the plugin's task
    ids = pipe.model.generate(**_inputs(pipe, image, task.prompt("cats")), max_new_tokens=len(target) + 2,
                              num_beams=1, logits_processor=LogitsProcessorList([Force()]))
    assert ids[0, 2:2 + len(target)].tolist() == target and target[0] == new_ids[0]


def _inputs(pipe, image, prompt):
    b = pipe.processor(images=[image], text=[prompt])
    return dict(pixel_values=b["pixel_values"], input_ids=b["input_ids"], attention_mask=b["attention_mask"])


def test_broken_plugins_are_named_and_builtins_still_load(plugin_dir):
    install_plugin(plugin_dir, "florence_broken", {
        "broken_import": "raise ImportError('needs the package frobnicate')",
        "broken_hook": "import florence\n@florence.hookimpl\ndef florence_register_task():\n    return []\n",
        "broken_return": "import florence\n@florence.hookimpl\ndef florence_register_tasks():\n    return ['<X>']\n",
        "clash": ("import florence\nfrom florence.task import TextTask\n@florence.hookimpl\n"
                  "def florence_register_tasks():\n    return [TextTask('<CAPTION>', 'Say something.')]\n"),
    }, {"zz_import": "broken_import", "zz_hook": "broken_hook", "zz_return": "broken_return", "zz_clash": "clash"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tasks = reload_tasks()
    errors = plugin_errors()
    assert len(tasks) == 17 and florence.get_task("<CAPTION>").template == "What does the image describe?"
    assert any("'zz_import'" in e and "frobnicate" in e and "florence_broken" in e for e in errors)
    assert any("'zz_hook'" in e and "florence_register_task" in e for e in errors)
    assert any("'zz_return'" in e and "not florence.task.Task" in e for e in errors)
    assert any("'zz_clash'" in e and "already registered by plugin 'captioning'" in e for e in errors)
    assert len(caught) >= 4
    with pytest.raises(TaskError, match="failed to load.*frobnicate"):
        florence.get_task("<FROBNICATE>")


TALLY_PLUGIN = '''
import florence
from florence.task import TextTask

class Tally(TextTask):
    token, template, input_kind, metrics = "<TALLY>", "Tally the {input}.", "text", ("tally_error", "accuracy")

class Broken(TextTask):
    token, template, metrics = "<BROKEN_METRIC>", "Anything.", ("no_such_metric",)

def tally_error(samples):
    return {"tally_error": sum(abs(int(s["pred"]) - int(s["gt"])) for s in samples) / len(samples)}

@florence.hookimpl
def florence_register_tasks():
    return [Tally(), Broken()]

@florence.hookimpl
def florence_register_metrics():
    return {"tally_error": tally_error}
'''


def test_a_plugin_brings_a_task_and_its_metric_and_unknown_metrics_are_named(plugin_dir):
    from florence.data.multitask import TaskSample
    from florence.evaluation import TaskMetric

    install_plugin(plugin_dir, "florence_tally", {"florence_tally": TALLY_PLUGIN, "metric_clash": (
        "import florence\n@florence.hookimpl\ndef florence_register_metrics():\n    return {'cider': len}\n")},
        {"tally": "florence_tally", "zz_metric_clash": "metric_clash"})
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        reload_tasks()
    errors = plugin_errors()
    assert any("<BROKEN_METRIC>" in e and "['no_such_metric']" in e and "'tally_error'" in e and "'cider'" in e
               for e in errors)  # the unknown name and the valid ones
    assert any("'cider' is already registered by plugin 'metrics'" in e for e in errors)
    with pytest.raises(TaskError, match="unknown task"):
        florence.get_task("<BROKEN_METRIC>")
    assert florence.get_metric("cider") is not len  # the built-in kept
    assert "tally_error" in florence.list_metrics() and florence.get_task("<TALLY>").metrics == ("tally_error",
                                                                                                  "accuracy")
    metric = TaskMetric()
    metric.process({}, [TaskSample("<TALLY>", "p", "t", gt, (8, 8), pred=pred) for pred, gt in (("3", "3"), ("5", "2"))])
    assert metric.compute_metrics(metric.results) == {"tally/tally_error": 1.5, "tally/accuracy": 0.5}
    with pytest.raises(TaskError, match="unknown metric 'nope'.*'tally_error'"):
        florence.get_metric("nope")


HOW_MANY_PLUGIN = '''
import florence
from florence.task import Task

class HowMany(Task):
    """How many objects: target '3', from any dataset that knows the image's objects."""
    token, template, metrics = "<HOW_MANY>", "How many objects are in the image?", ("accuracy",)

    def encode_target(self, annotation, image_size):
        return str(int(annotation))

    def decode_output(self, text, image_size, scores=None):
        digits = "".join(c for c in text if c.isdigit())
        return int(digits) if digits else None

    def example(self, rng, image_size):
        return None, rng.randint(0, 9)

    @staticmethod
    def make(annotations):
        return None, len(annotations.objects)

@florence.hookimpl
def florence_register_tasks():
    return [HowMany()]
'''


def test_a_new_task_trains_on_existing_formats_without_data_code(plugin_dir):
    """A plugin task with ``make`` gets its samples from the synthetic scenes and from a COCO file
    (objects counted), and the multitask mixer turns them into targets: no data code names it."""
    import json

    from florence.data import CocoDetection, MultiTaskDataset, SyntheticScenes

    install_plugin(plugin_dir, "florence_how_many", {"florence_how_many": HOW_MANY_PLUGIN}, {"how_many": "florence_how_many"})
    reload_tasks()
    scenes = SyntheticScenes(seed=2, length=5, image_size=64, tasks=["<HOW_MANY>"])
    assert [s["annotation"] for s in scenes] == [len(s["objects"]["labels"]) - sum(label.isupper() for label in
                                                 s["objects"]["labels"]) for s in scenes]  # the shapes, not the words
    Image.new("RGB", (40, 30)).save(plugin_dir / "a.png")
    coco = plugin_dir / "instances.json"
    coco.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.png", "width": 40, "height": 30}],
                                "categories": [{"id": 1, "name": "cat"}],
                                "annotations": [{"id": k, "image_id": 1, "category_id": 1, "bbox": [k, k, 5, 5],
                                                 "iscrowd": 0} for k in range(3)]}))
    (item,) = CocoDetection(str(coco), str(plugin_dir), tasks=["<HOW_MANY>"])
    assert (item["task"], item["annotation"]) == ("<HOW_MANY>", 3)
    # a built-in task COCO's adapter never named: open-vocabulary detection of each category, all its boxes
    (ovd,) = CocoDetection(str(coco), str(plugin_dir), tasks=["<OPEN_VOCABULARY_DETECTION>"])
    assert ovd["text_input"] == "cat" and ovd["annotation"]["bboxes"] == [[k, k, k + 5, k + 5] for k in range(3)]
    mixed = MultiTaskDataset([scenes, [item]], image_size=64)
    assert mixed[5]["data_samples"].target == "3"
    assert mixed[0]["data_samples"].prompt == "How many objects are in the image?"
    with pytest.raises(ValueError, match="<VQA>.. cannot be made from image annotations"):
        CocoDetection(str(coco), str(plugin_dir), tasks=["<VQA>"])
    # what COCO instances lack is named, never an empty target: captions, words, descriptions
    for task, missing in (("<CAPTION>", "no caption"), ("<OCR>", "no words"), ("<DENSE_REGION_CAPTION>", "no description"),
                          ("<REGION_TO_DESCRIPTION>", "no description")):
        with pytest.raises(ValueError, match=f"not what the task needs.*{missing}"):
            CocoDetection(str(coco), str(plugin_dir), tasks=[task])


def _docs_modules() -> dict:
    """The two Python files of docs/extending.md (the output kind, then the task), as written there."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "extending.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) == 2, "docs/extending.md shows the kind and the task, one block each"
    return {"lines_kind": blocks[0], "lines_task": blocks[1]}


def test_a_new_output_kind_and_its_task_are_one_file_each(plugin_dir, tiny_folder, tmp_path):
    """docs/extending.md's plugin, installed as a package: a task of a new output kind (line
    segments) is found, round-trips its target, runs in the pipeline, and the code that reads outputs
    through their regions (drawing, the data engine's filters and consensus, the server's score
    filter, COCO writing) handles it without knowing its keys."""
    from florence.deploy.serve.checks import filter_scores
    from florence.label.filters import MinBoxSize, ScoreThreshold, apply_filters
    from florence.grammar import count_malformed
    from florence.label.merge import Consensus
    from florence.visualize import draw_result

    install_plugin(plugin_dir, "florence_lines", _docs_modules(), {"lines": "lines_task"})
    reload_tasks()
    assert plugin_errors() == []
    task = florence.get_task("lines")
    assert task.token == "<LINES>" and type(task).__name__ == "LineTask"
    size = (200, 100)
    annotation = {"lines": [[10, 20, 150, 80], [30, 30, 31, 31]], "labels": ["edge", "dot"]}
    target = task.encode_target(annotation, size)
    back = task.decode_output(f"</s><s>{target}</s>", size)
    assert back["labels"] == ["edge", "dot"]
    assert all(abs(a - b) <= 1 for got, want in zip(back["lines"], annotation["lines"]) for a, b in zip(got, want))

    pipe = florence.pipeline(tiny_folder)  # a random model: any output, parsed without raising
    result = pipe(Image.new("RGB", (64, 48), "gray"), "lines", max_new_tokens=12, num_beams=1)
    assert set(result["<LINES>"]) >= {"lines", "labels"}
    kept, _ = pipe.generate_texts([Image.new("RGB", (64, 48), "gray")], [task.prompt()], max_new_tokens=12,
                                  num_beams=1, grammars=[task.grammar])  # the kind's own grammar
    ids = pipe.processor.tokenizer(kept[0].replace("<pad>", ""), add_special_tokens=False)["input_ids"]
    assert count_malformed(ids, task.grammar, pipe.processor.tokenizer, pipe.processor.location_token_ids)[1:] == \
        (0, True), kept[0]

    drawn = draw_result(Image.new("RGB", size, "white"), {"<LINES>": annotation})
    assert drawn.getpixel((80, 50)) != (255, 255, 255)  # on the line from (10, 20) to (150, 80)

    scored = dict(annotation, scores=[0.9, 0.2])
    counts = {}
    kept = apply_filters([ScoreThreshold(0.5)], scored, "<LINES>", size, counts)
    assert kept == {"lines": [[10, 20, 150, 80]], "labels": ["edge"], "scores": [0.9]}
    assert counts["ScoreThreshold"] == {"items": 1, "samples": 0}
    assert apply_filters([MinBoxSize(4)], annotation, "<LINES>", size, {})["labels"] == ["edge"]
    assert filter_scores(scored, "<LINES>", 0.5) == kept
    merged = Consensus(min_votes=2)([scored, dict(scored, scores=[0.8, 0.1]), None], "<LINES>")
    assert merged["labels"] == ["edge", "dot"] and merged["lines"][0] == [10, 20, 150, 80]

    from florence.data import write_coco
    from florence.evaluation.task_metric import is_malformed

    with pytest.raises(ValueError, match="box tasks"):
        write_coco([], tmp_path / "c.json", tasks=["<LINES>"])
    # the metrics' malformed-output check finds the lines through the task's region_keys
    assert not is_malformed(annotation, task) and not is_malformed(task.decode_output("<loc_1>", size), task)
    assert is_malformed({"lines": [[1, "x", 3, 4]], "labels": ["a"]}, task)
    assert is_malformed({"lines": [[1, 2, 3, 4]], "labels": ["a", "b"]}, task)
    assert not is_malformed({"lines": [[1, "x", 3, 4]], "labels": ["a"]})  # without the task: not a known key


def test_the_grounding_task_class_is_not_named_as_the_dataset():
    import florence.tasks.grounding as grounding
    from florence.data import PhraseGrounding

    assert type(florence.get_task("<CAPTION_TO_PHRASE_GROUNDING>")) is grounding.PhraseGroundingTask
    with pytest.deprecated_call(match="the task's class is PhraseGroundingTask"):
        assert grounding.PhraseGrounding is grounding.PhraseGroundingTask
    assert PhraseGrounding is not grounding.PhraseGroundingTask  # the dataset keeps its name
