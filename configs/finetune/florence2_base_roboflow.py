"""Fine-tune Florence-2-base on a Roboflow / maestro JSON Lines export, whatever its tasks.

Data: a dataset folder as Roboflow exports it for Florence-2 (and maestro reads it), images beside
each split's annotations::

    DATASET/train/annotations.jsonl   DATASET/valid/annotations.jsonl   DATASET/test/annotations.jsonl
    {"image": "0001.jpg", "prefix": "<OD>", "suffix": "car<loc_52><loc_333><loc_932><loc_774>"}

A prefix that starts with a task token trains and evaluates as that task (its prompt, its metrics:
``<OD>`` scores COCO mAP); any other prefix is a custom prompt, evaluated as ``<VQA>`` (exact-match
VQA accuracy). Bad records are skipped in training (counted in one warning) and are an error in
evaluation.
Expected: depends on the dataset; the table after each evaluation has every task's metrics.
Time: ~2k iterations of batch 8 at 768 px for a few thousand images (tens of minutes on a GPU; on CPU
use the tiny recipe's ideas: smaller ``image_size``, ``freeze=("vision_tower",)``).
Command: .venv/bin/florence train configs/finetune/florence2_base_roboflow.py \\
             --cfg-options data_root=/data/my-dataset model.pretrained=/ckpt/Florence-2-base
"""
from mmengine.config import read_base

from florence.data import JsonlDataset

with read_base():
    from .._base_.finetune import *  # noqa: F401,F403

data_root = "data/roboflow/"  # --cfg-options data_root=DIR moves every path below (tools/train.py)
model.update(generation=dict(num_beams=3, max_new_tokens=1024))  # noqa: F405
train_dataloader.dataset.datasets = [  # noqa: F405
    dict(type=JsonlDataset, ann_file=data_root + "train/annotations.jsonl", on_bad_record="skip")]
val_dataloader.dataset.datasets = [  # noqa: F405
    dict(type=JsonlDataset, ann_file=data_root + "valid/annotations.jsonl")]
test_dataloader = dict(val_dataloader, dataset=dict(  # noqa: F405
    val_dataloader.dataset, datasets=[dict(type=JsonlDataset, ann_file=data_root + "test/annotations.jsonl")]))  # noqa: F405
max_iters = 2_000
train_cfg.update(max_iters=max_iters, val_interval=500)  # noqa: F405
param_scheduler[1].update(end=max_iters, T_max=max_iters - warmup_iters)  # noqa: F405
