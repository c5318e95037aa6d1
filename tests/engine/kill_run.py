"""tools/train.py for the kill test. With FLORENCE_TEST_SAVE_PAUSE=s, each file written through
florence's atomic backend (checkpoints, ``last_checkpoint``) prints ``SAVING <temporary file>`` and
waits s seconds before it is synced and renamed: the test sends SIGKILL inside that window."""
import importlib.util
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
pause = float(os.environ.get("FLORENCE_TEST_SAVE_PAUSE", "0"))
if pause:
    _fsync = os.fsync

    def announced_fsync(fd):
        print("SAVING", os.readlink(f"/proc/self/fd/{fd}"), flush=True)
        time.sleep(pause)
        _fsync(fd)

    os.fsync = announced_fsync

spec = importlib.util.spec_from_file_location("train_tool", ROOT / "tools" / "train.py")
tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tool)
tool.main(sys.argv[1:])
