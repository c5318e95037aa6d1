"""Fine-tune Florence-2-base for document question answering (``<DOCVQA>``, ANLS) from JSON Lines,
with the vision tower frozen (the usual recipe: documents differ from the pre-training images less
than the answers do, and it halves the memory).

Data: data/docvqa/{train,val}.jsonl, one question a line:
``{"image": "documents/x.png", "task": "<DOCVQA>", "text_input": "What is the total?", "annotation": ["$12", "12"]}``
(images relative to data/docvqa/).
Expected: no DocVQA number is published for Florence-2 (spec: TextVQA 63.6 for the generalist base
model); community fine-tunes report ANLS around 0.6 on DocVQA val.
Time: ~5k iterations of batch 8 at 768 px (an hour or two on 8 GPUs).
Command: bash tools/dist_train.sh configs/finetune/florence2_base_docvqa.py 8 --cfg-options model.pretrained=PATH
"""
from mmengine.config import read_base

from florence.data import JsonlDataset

with read_base():
    from .._base_.finetune import *  # noqa: F401,F403

data_root = "data/docvqa/"
model.update(freeze=("vision_tower",), generation=dict(num_beams=3, max_new_tokens=64))  # noqa: F405
train_dataloader.dataset.datasets = [  # noqa: F405
    dict(type=JsonlDataset, ann_file=data_root + "train.jsonl", img_dir=data_root, on_bad_record="skip")]
val_dataloader.dataset.datasets = [  # noqa: F405
    dict(type=JsonlDataset, ann_file=data_root + "val.jsonl", img_dir=data_root)]
test_dataloader = val_dataloader  # noqa: F405
max_iters = 5_000
train_cfg.update(max_iters=max_iters, val_interval=1_000)  # noqa: F405
param_scheduler[1].update(end=max_iters, T_max=max_iters - warmup_iters)  # noqa: F405
