"""Fine-tune Florence-2-base for phrase grounding on Flickr30k Entities
(``<CAPTION_TO_PHRASE_GROUNDING>``, recall@1).

Data: data/flickr30k/ with {train,val}.jsonl (one caption a line:
``{"image": "123.jpg", "caption": "...", "phrases": [{"phrase": "a dog", "boxes": [[x1, y1, x2, y2]]}]}``,
converted from the Entities' Sentences/Annotations files) and images/.
Expected: Flickr30k R@1 83.6 zero-shot for Florence-2-base (spec); fine-tuning should not fall below it.
Time: ~20k iterations of batch 8 at 768 px (hours on 8 GPUs).
Command: bash tools/dist_train.sh configs/finetune/florence2_base_flickr30k_grounding.py 8 --cfg-options model.pretrained=PATH
"""
from mmengine.config import read_base

from florence.data import PhraseGrounding

with read_base():
    from .._base_.finetune import *  # noqa: F401,F403

data_root = "data/flickr30k/"
train_dataloader.dataset.datasets = [  # noqa: F405
    dict(type=PhraseGrounding, ann_file=data_root + "train.jsonl", img_dir=data_root + "images",
         on_bad_record="skip")]
val_dataloader.dataset.datasets = [  # noqa: F405
    dict(type=PhraseGrounding, ann_file=data_root + "val.jsonl", img_dir=data_root + "images")]
test_dataloader = val_dataloader  # noqa: F405
