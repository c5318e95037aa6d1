"""Dataset adapters: the annotation formats users have on disk -> florence samples, one module per
format (what they share, validation and the bad-record policy: :mod:`florence.data.records`)::

    train = MultiTaskDataset([dict(type="CocoDetection", ann_file="instances_train2017.json",
                                   img_dir="train2017", tasks=["<OD>", "<REGION_TO_CATEGORY>"]),
                              dict(type="CocoCaptions", ann_file="captions_train2017.json", img_dir="train2017")],
                             weights=[1, 1], image_size=768)

=====================  ==================================================================
``coco``               ``CocoDetection`` (also Roboflow's COCO export), ``CocoCaptions``
``refcoco``            ``RefCoco`` (RefCOCO / RefCOCO+ / RefCOCOg refs + instances)
``grounding``          ``PhraseGrounding`` (Flickr30k-Entities style)
``vqa``                ``VqaDataset`` (VQAv2, TextVQA, DocVQA)
``ocr``                ``OcrDataset`` (TextOCR style), ``reading_order``
``jsonl``              ``JsonlDataset`` (florence's JSON Lines, Roboflow's and maestro's)
=====================  ==================================================================

Each module's docstring shows its format with an example record and what the record becomes.
"""
from .coco import CocoCaptions, CocoDetection
from .grounding import PhraseGrounding
from .jsonl import JsonlDataset
from .ocr import OcrDataset, reading_order
from .records import BadRecord
from .refcoco import RefCoco
from .vqa import VqaDataset

__all__ = ["CocoDetection", "CocoCaptions", "RefCoco", "PhraseGrounding", "VqaDataset", "OcrDataset",
           "JsonlDataset", "BadRecord", "reading_order"]
