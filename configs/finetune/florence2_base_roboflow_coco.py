"""Fine-tune Florence-2-base for detection (``<OD>``) on a Roboflow COCO export.

Data: a dataset folder as Roboflow exports it in "COCO JSON" format, images beside each split's
annotations::

    DATASET/train/_annotations.coco.json   DATASET/valid/_annotations.coco.json   DATASET/test/_annotations.coco.json

Every image with boxes is an ``<OD>`` sample (category names as labels; Roboflow's unused
super-category entry is ignored), evaluated with COCO mAP (pycocotools). Bad annotations are skipped
in training (counted in one warning) and are an error in evaluation.
Expected: depends on the dataset; the table after each evaluation has bbox mAP, mAP@0.5, mAP@0.75.
Time: as ``florence2_base_roboflow.py`` (~2k iterations of batch 8 at 768 px).
Command: .venv/bin/florence train configs/finetune/florence2_base_roboflow_coco.py \\
             --cfg-options data_root=/data/my-dataset model.pretrained=/ckpt/Florence-2-base
"""
from mmengine.config import read_base

from florence.data import CocoDetection

with read_base():
    from .florence2_base_roboflow import *  # noqa: F401,F403  (the same recipe; other files)

data_root = "data/roboflow_coco/"  # --cfg-options data_root=DIR moves every path below (tools/train.py)
train_dataloader.dataset.datasets = [  # noqa: F405
    dict(type=CocoDetection, ann_file=data_root + "train/_annotations.coco.json", on_bad_record="skip")]
val_dataloader.dataset.datasets = [dict(type=CocoDetection, ann_file=data_root + "valid/_annotations.coco.json")]  # noqa: F405
test_dataloader.dataset.datasets = [dict(type=CocoDetection, ann_file=data_root + "test/_annotations.coco.json")]  # noqa: F405
