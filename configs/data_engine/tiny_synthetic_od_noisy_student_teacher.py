"""Noisy Student as its paper runs it (issue 31): the teacher is trained on the labelled data first.

As ``tiny_synthetic_od_noisy_student_labelled.py``, but round 0's annotator is not the main job's
checkpoint (15 tasks, its ``<OD>`` held-out mAP@0.5 0.755 on AVX2 fp32): it is the tiny model trained
on the 10000 labelled scenes alone (the labelled baseline, 0.932 there), reading the 16000 unlabelled
scenes as they are and mirrored. Round 1's student, the same size, trains with input noise on its
labels and the labelled scenes; round 2's on round 1's. The question: does the student beat its
teacher, i.e. do the pseudo-labels add to the labelled data they come from?

Measured (bf16, 2-core AVX-512; docs/data-engine.md), held-out mAP@0.5 / mAP: teacher 0.916 / 0.635,
round-1 student 0.928 / 0.630, round-2 student 0.875 / 0.532: no loss from the pseudo-labels in round 1,
no clear gain, and the second round falls.

Command: .venv/bin/python tools/data_engine.py configs/data_engine/tiny_synthetic_od_noisy_student_teacher.py
"""
from mmengine.config import read_base

with read_base():
    from .tiny_synthetic_od_noisy_student_labelled import *  # noqa: F401,F403

annotators = [dict(teacher="labelled", view=v) for v in views]  # noqa: F405
rounds = 2
truth_baseline = False
