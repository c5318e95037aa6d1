"""The data engine on the built-in synthetic scenes, measured against their ground truth.

Annotator: the main job's checkpoint (``tools/train.py configs/florence2/florence2_tiny_synthetic.py``,
its work dir). Round 0 labels 8000 unlabelled scenes for ``<OD>`` (their truth is never read for
labelling) and filters the labels; round 1 trains a fresh tiny model with the main job's recipe and
budget (2200 steps of 16 samples) on those labels and labels the scenes again; the truth baseline
trains the same model on the same scenes' true boxes. Every annotator is measured on 500 held-out
scenes (another seed): precision / recall at IoU 0.5 and COCO mAP before filtering and after each filter.

Command: .venv/bin/python tools/data_engine.py configs/data_engine/tiny_synthetic_od.py
"""
from florence.data import SyntheticScenes

main = "configs/florence2/florence2_tiny_synthetic.py"
scenes = dict(type=SyntheticScenes, image_size=128, text_size=1 / 4, tasks=["<OD>"])

tasks = ["<OD>"]
annotators = [dict(config=main, checkpoint="work_dirs/florence2_tiny_synthetic")]
images = dict(scenes, seed=777, length=8000)
merge = None  # one annotator; e.g. dict(type="Consensus", min_votes=2) with several
filters = [
    # the ontology the scenes (and the objects head) have: drops "a red circle" and other made-up names
    dict(type="KnownLabels", labels="florence.data.synthetic:category_names"),
    # scores are "this box is right" (P(label) x location mass, florence.generation.location_scores).
    # Chosen on 200 scenes of a third seed (999), after KnownLabels (precision 0.828 / recall 0.81): 0.5
    # keeps 0.854 / 0.81, 0.6 0.884 / 0.78, 0.7 0.919 / 0.71, 0.8 0.984 / 0.54. (With the earlier
    # per-token scores the threshold was 0.015: 0.86 / 0.77.)
    dict(type="ScoreThreshold", min_score=0.5),
    dict(type="ClassAwareNMS", iou_threshold=0.5),
    dict(type="MinBoxSize", min_size=6),  # the scenes' smallest shapes are ~20 px (0.16 of 128)
    dict(type="WholeImageBoxes", max_coverage=0.9),
]
label = dict(batch_size=32, shard_size=500, generation=dict(num_beams=1, max_new_tokens=80))
rounds = 1
train = dict(config=main, objects_from_boxes=True, cfg_options={})
truth_baseline = True
evaluate = dict(dataset=dict(scenes, seed=2024, length=500), batch_size=32)
