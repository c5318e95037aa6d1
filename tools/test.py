"""Evaluate a checkpoint on a config's test set: ``florence test`` as an mmengine-style script (the same
options: ``florence test --help``); the run's log prints the (task, metric, value, samples, invalid) table.

    python tools/test.py CONFIG CHECKPOINT [--out metrics.json] [--work-dir DIR] [--cfg-options k=v ...]
"""
from florence.cli import job_options
from florence.engine import evaluate


def main(argv=None):
    """:func:`florence.engine.evaluate` with this command line (``argv``: default ``sys.argv[1:]``); the rows."""
    return evaluate(**job_options("test", argv))


if __name__ == "__main__":
    main()
