"""Datasets: the multitask mixer, the built-in synthetic scenes, adapters for the formats users
have (COCO, RefCOCO, Flickr30k-style grounding, VQA, OCR, JSON Lines, Roboflow / maestro), writers
for the formats other tools read (florence and maestro JSON Lines, COCO), and tar shards that stream
(:func:`write_shards`, :class:`ShardedDataset`, mixed by :class:`MultiTaskStream`)."""
from .adapters import (CocoCaptions, CocoDetection, JsonlDataset, OcrDataset, PhraseGrounding, RefCoco,
                       VqaDataset)
from .writers import write_coco, write_jsonl, write_maestro
from .multitask import ImageTasks, MultiTaskDataset, MultiTaskStream, TaskSample
from .shards import ShardedDataset, write_shards
from .synthetic import SyntheticScenes, vocabulary_texts

__all__ = ["CocoDetection", "CocoCaptions", "RefCoco", "PhraseGrounding", "VqaDataset", "OcrDataset",
           "ImageTasks", "JsonlDataset", "MultiTaskDataset", "MultiTaskStream", "ShardedDataset", "TaskSample",
           "SyntheticScenes", "vocabulary_texts", "write_coco", "write_jsonl", "write_maestro", "write_shards"]
