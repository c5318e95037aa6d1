"""Train (and evaluate) a Florence-2 model from a config: ``florence train`` as an mmengine-style script
(the same options: ``florence train --help``).

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp] [--cfg-options k=v ...]
    torchrun --nproc_per_node N tools/train.py CONFIG --launcher pytorch     # data-parallel, CPU or GPU
"""
import os

from florence.cli import job_options
from florence.engine import keep_freed_memory, train


def main(argv=None):
    """:func:`florence.engine.train` with this command line (``argv``: default ``sys.argv[1:]``); the runner."""
    return train(**job_options("train", argv))


if __name__ == "__main__":
    if os.environ.get("FLORENCE_KEEP_FREED_MEMORY", "1") != "0":
        keep_freed_memory()  # training steps reuse their memory instead of faulting it in again
    main()
