"""The data engine's rounds loop in a process of its own, for the kill test: ``rounds_run.py WORK_DIR``
runs :func:`tests.label.test_rounds.toy` (round 0 labels, round 1 trains, exports and labels again,
the truth baseline trains and exports; every annotator measured on held-out scenes) and prints ``DONE``. With FLORENCE_TEST_EXPORT_PAUSE=s, every model
export prints ``EXPORTING <folder>`` once the weights and config are written and waits s seconds
before the tokenizer and image processor files are."""
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.chdir(ROOT)  # the toy config names the main job's config by its path in the repository

from florence.label.rounds import run_data_engine  # noqa: E402
from florence.processing import Florence2Processor  # noqa: E402
from tests.label.test_rounds import annotator, toy  # noqa: E402

pause = float(os.environ.get("FLORENCE_TEST_EXPORT_PAUSE", "0"))
if pause:
    save = Florence2Processor.save_pretrained

    def paused_save(self, folder, *args, **kwargs):
        print("EXPORTING", folder, flush=True)
        time.sleep(pause)
        return save(self, folder, *args, **kwargs)

    Florence2Processor.save_pretrained = paused_save

if __name__ == "__main__":
    run_data_engine(toy(annotator), sys.argv[1])
    print("DONE", flush=True)
