"""florence.label.label in a process of its own, for the kill test: ``label_run.py IMAGES OUT``.
The annotator is scripted (outputs follow from the pixels, so every run writes the same labels) and
slow enough to be killed mid-shard. With FLORENCE_TEST_SAVE_PAUSE=s, every file written through the
atomic writer prints ``SAVING <temporary file>``; the one named FLORENCE_TEST_SAVE_PAUSE_ON waits s
seconds before it is synced and renamed."""
import os
import sys
import time

pause = float(os.environ.get("FLORENCE_TEST_SAVE_PAUSE", "0"))
pause_on = os.environ.get("FLORENCE_TEST_SAVE_PAUSE_ON", "")
if pause:
    _fsync = os.fsync

    def announced_fsync(fd):
        name = os.readlink(f"/proc/self/fd/{fd}")
        print("SAVING", name, flush=True)
        if pause_on and f".{pause_on}." in name:
            time.sleep(pause)
        _fsync(fd)

    os.fsync = announced_fsync

from ray_run import scripted  # noqa: E402  (beside this file)

from florence.label import label  # noqa: E402


def annotator(images, task):
    time.sleep(0.05)
    return scripted(images)


if __name__ == "__main__":
    label(annotator, sys.argv[1], ["<OD>"], sys.argv[2], batch_size=2, shard_size=3, progress=False,
          filters=[dict(type="ScoreThreshold", min_score=0.3), dict(type="ClassAwareNMS", iou_threshold=0.5)])
    print("DONE", flush=True)
