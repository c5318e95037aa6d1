"""The data engine (Florence-2's way of making its training data): annotate images with models,
merge them by consensus, filter the annotations by rules, write them as resumable shards
(``florence label``); ``tools/data_engine.py`` adds the rounds of training on the labels."""
from .engine import label, read_manifest
from .filters import (ClassAwareNMS, KnownLabels, MinBoxSize, ScoreThreshold, TextComplexity, TooManyObjects,
                      WholeImageBoxes, apply_filters, build_filters)
from .merge import Consensus
from .views import Augmented, View

__all__ = ["label", "read_manifest", "Consensus", "View", "Augmented", "ScoreThreshold", "ClassAwareNMS", "MinBoxSize",
           "WholeImageBoxes", "KnownLabels", "TooManyObjects", "TextComplexity", "apply_filters", "build_filters"]
