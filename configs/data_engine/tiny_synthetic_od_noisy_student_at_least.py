"""Few labelled scenes, each round's threshold the highest that keeps no fewer labels than objects (issue 31).

As ``tiny_synthetic_od_noisy_student_calibrated.py``, with the criterion ``"at_least_count"``: of the
thresholds that keep at least as many boxes on the 200 labelled scenes of seed 999 (after every filter)
as they hold objects, the highest. With ``"count"`` (the closest count) round 0's threshold rose from
0.3 to 0.325 (313 boxes for 332 objects against 372 at 0.3), its labels lost recall and round 1's
student lost 0.075 mAP@0.5: a student learns to stop early from labels that miss objects.

Measured (bf16, 2-core AVX-512; docs/data-engine.md), held-out mAP@0.5 / mAP: teacher 0.446 / 0.198,
round 1 0.635 / 0.304 (thresholds 0.3, then 0.2), round 2 0.621 / 0.272 (the fixed 0.3: 0.583), truth
baseline 0.922 / 0.651: round 2 closes 37% of the gap to the truth.

Command: .venv/bin/python tools/data_engine.py configs/data_engine/tiny_synthetic_od_noisy_student_at_least.py
"""
from mmengine.config import read_base

with read_base():
    from .tiny_synthetic_od_noisy_student_calibrated import *  # noqa: F401,F403

calibrate = dict(calibrate, criterion="at_least_count")  # noqa: F405
