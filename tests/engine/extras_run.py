"""For the missing-extra test: ``extras_run.py PACKAGES WORK_DIR CONFIG...`` makes the comma-separated
PACKAGES unimportable, as if not installed (``sys.modules[name] = None``: ``import`` raises
ModuleNotFoundError and ``importlib.util.find_spec`` returns None, as for an absent package), then
runs each CONFIG through ``tools/train.py`` and ``tools/test.py`` as a user would and prints one JSON
line per run: the tool, the config, and how it stopped (the SystemExit message, or the exception)."""
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

for package in sys.argv[1].split(","):
    sys.modules[package] = None
sys.path.insert(0, str(ROOT / "tools"))
import test as test_tool  # noqa: E402  (tools/test.py)
import train as train_tool  # noqa: E402  (tools/train.py)

work_dir = sys.argv[2]
for config in sys.argv[3:]:
    for name, run in (("train", lambda: train_tool.main([config, "--work-dir", work_dir])),
                      ("test", lambda: test_tool.main([config, f"{work_dir}/none.pth", "--work-dir", work_dir]))):
        try:
            run()
            stopped = "ran"
        except SystemExit as e:
            stopped = f"SystemExit: {e.code}"
        except BaseException as e:  # noqa: BLE001  (reported to the test)
            stopped = f"{type(e).__name__}: {e}"
        print(json.dumps(dict(tool=name, config=config, stopped=stopped)), flush=True)
