"""florence's mmengine registries: children of mmengine's roots, so mmengine's Runner finds what
florence registers (configs set ``default_scope = "florence"``). ``locations`` imports the
defining package on first lookup, so a config never depends on a forgotten import."""
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import LOOPS as MMENGINE_LOOPS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODEL_WRAPPERS as MMENGINE_MODEL_WRAPPERS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import Registry

MODELS = Registry("model", parent=MMENGINE_MODELS, scope="florence", locations=["florence.models", "florence.engine"])
MODEL_WRAPPERS = Registry("model_wrapper", parent=MMENGINE_MODEL_WRAPPERS, scope="florence",
                          locations=["florence.engine"])
DATASETS = Registry("dataset", parent=MMENGINE_DATASETS, scope="florence", locations=["florence.data"])
TRANSFORMS = Registry("transform", parent=MMENGINE_TRANSFORMS, scope="florence", locations=["florence.data"])
METRICS = Registry("metric", parent=MMENGINE_METRICS, scope="florence",
                   locations=["florence.evaluation", "florence.evaluation.task_metric"])
HOOKS = Registry("hook", parent=MMENGINE_HOOKS, scope="florence", locations=["florence.engine"])
LOOPS = Registry("loop", parent=MMENGINE_LOOPS, scope="florence", locations=["florence.engine"])
OPTIM_WRAPPERS = Registry("optim_wrapper", parent=MMENGINE_OPTIM_WRAPPERS, scope="florence",
                          locations=["florence.engine"])
# the data engine's filter rules (florence.label.filters); no mmengine parent: mmengine has no such registry
LABEL_FILTERS = Registry("label_filter", scope="florence", locations=["florence.label.filters"])
# how the data engine merges several annotators' outputs of one image (florence.label.merge)
LABEL_MERGERS = Registry("label_merger", scope="florence", locations=["florence.label.merge"])
# the image encoders a VisionConfig(tower=name) builds (florence.models.tower: "davit" is Florence-2's)
VISION_TOWERS = Registry("vision_tower", scope="florence", locations=["florence.models.tower"])
