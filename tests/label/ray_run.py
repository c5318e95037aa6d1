"""Scripted annotators for the Ray engine's tests, and ``florence.label.label(engine="ray")`` in a
process of its own (the driver the test kills): ``ray_run.py IMAGES OUT ADDRESS``. Prints ``WROTE
shard-K.json`` as each shard's counts are saved."""
import os
import signal
import sys
import time

import numpy as np

FILTERS = [dict(type="ScoreThreshold", min_score=0.3), dict(type="ClassAwareNMS", iou_threshold=0.5)]


def scripted(images):
    """Two boxes per image that follow from its pixels: every run writes the same labels."""
    out = []
    for image in images:
        s = int(np.asarray(image, dtype=np.int64).sum())
        box = [s % 20, s % 17, 30 + s % 20, 30 + s % 13]
        out.append({"bboxes": [box, [b + 1 for b in box]], "labels": ["circle", "circle"],
                    "scores": [0.5 + (s % 50) / 100, 0.2]})
    return out


class Scripted:
    """:func:`scripted` as an annotator, ``pause`` seconds per batch; with ``die_at`` its process kills
    itself (SIGKILL) at that call, once: the first process to get there writes its pid to ``marker``."""

    def __init__(self, pause=0.0, die_at=None, marker=None):
        self.pause, self.die_at, self.marker, self.calls = pause, die_at, marker, 0

    def __call__(self, images, task):
        self.calls += 1
        if self.die_at == self.calls and not os.path.exists(self.marker):
            with open(self.marker, "w") as f:
                f.write(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(self.pause)
        return scripted(images)


if __name__ == "__main__":
    import florence.label.engine as engine

    write_text = engine.write_text

    def announced(path, text):
        write_text(path, text)
        print("WROTE", os.path.basename(path), flush=True)

    engine.write_text = announced
    engine.label(Scripted(pause=0.3), sys.argv[1], ["<OD>"], sys.argv[2], batch_size=2, shard_size=3,
                 filters=FILTERS, progress=False, engine="ray", address=sys.argv[3], replicas=2)
    print("DONE", flush=True)
