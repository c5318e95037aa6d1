"""Export a training checkpoint as a model folder (or ONNX): ``florence export`` (``florence export -h``).

    python tools/export.py CONFIG CHECKPOINT OUT_DIR [--layout native|microsoft] [--image-size N] [--cfg-options k=v ...]
"""
import sys

from florence.cli import main

if __name__ == "__main__":
    sys.exit(main(["export", *sys.argv[1:]]))
