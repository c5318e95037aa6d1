"""Noisy Student's whole recipe (issue 31): the student trains on the pseudo-labels *and* labelled data.

As ``tiny_synthetic_od_noisy_student.py`` (two views, their consensus, a mirrored-input student, a
second round), but each round's student also trains on 10000 scenes with their true ``<OD>`` boxes:
about as many ``<OD>`` samples as the annotator drew in its own training (2200 steps x 16 scenes x 2
tasks, ``<OD>`` weight 2.5 of 16.75: ~10500), from the annotator's own training seed (0), none of them
held out (2024) or among the unlabelled scenes (777). ``labelled_baseline`` trains the same student on
those 10000 scenes alone: what the 16000 pseudo-labelled scenes add to them.

Measured with ``--cfg-options rounds=1 truth_baseline=False`` (float32, 2-core AVX2; docs/data-engine.md),
held-out mAP@0.5: annotator 0.755, round-1 student 0.857, the labelled scenes alone 0.932: the student
beats its annotator, but the pseudo-labels cost it 0.075 against the labelled data alone.

Command: .venv/bin/python tools/data_engine.py configs/data_engine/tiny_synthetic_od_noisy_student_labelled.py
"""
from mmengine.config import read_base

with read_base():
    from .tiny_synthetic_od_noisy_student import *  # noqa: F401,F403

train = dict(train, labelled=[dict(scenes, seed=0, length=10000)])  # noqa: F405
labelled_baseline = True
