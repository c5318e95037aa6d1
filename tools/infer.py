"""Run a Florence-2 task on images from the command line (the same as ``florence infer``).

    python tools/infer.py --model PATH --task "<OD>" IMAGES... --out results.jsonl [--vis DIR]
"""
import sys

from florence.cli import main

if __name__ == "__main__":
    sys.exit(main(["infer", *sys.argv[1:]]))
