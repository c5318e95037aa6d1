"""florence's mmengine registries: children of mmengine's roots, so mmengine's Runner finds what
florence registers. ``locations`` imports the defining package on first lookup, so a config never
depends on a forgotten import (data and metric registries gain their locations with those packages)."""
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import Registry

MODELS = Registry("model", parent=MMENGINE_MODELS, scope="florence", locations=["florence.models"])
DATASETS = Registry("dataset", parent=MMENGINE_DATASETS, scope="florence")
TRANSFORMS = Registry("transform", parent=MMENGINE_TRANSFORMS, scope="florence")
METRICS = Registry("metric", parent=MMENGINE_METRICS, scope="florence")
