"""The data engine (Florence-2's way of making its training data): annotate images with models,
merge them by consensus, filter the annotations by rules, write them as resumable shards (``florence label``)."""
from .engine import label, read_manifest
from .merge import Consensus
from .filters import (ClassAwareNMS, MinBoxSize, ScoreThreshold, TextComplexity, TooManyObjects, WholeImageBoxes,
                      apply_filters, build_filters)

__all__ = ["label", "read_manifest", "Consensus", "ScoreThreshold", "ClassAwareNMS", "MinBoxSize", "WholeImageBoxes",
           "TooManyObjects", "TextComplexity", "apply_filters", "build_filters"]
