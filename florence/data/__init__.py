"""Datasets: the multitask mixer, the built-in synthetic scenes, adapters for the formats users
have (COCO, RefCOCO, Flickr30k-style grounding, VQA, OCR, JSON Lines, Roboflow / maestro) and writers
for the formats other tools read (florence and maestro JSON Lines, COCO)."""
from .adapters import (CocoCaptions, CocoDetection, JsonlDataset, OcrDataset, PhraseGrounding, RefCoco,
                       VqaDataset)
from .export import write_coco, write_jsonl, write_maestro
from .multitask import ImageTasks, MultiTaskDataset, TaskSample
from .synthetic import SyntheticScenes, vocabulary_texts

__all__ = ["CocoDetection", "CocoCaptions", "RefCoco", "PhraseGrounding", "VqaDataset", "OcrDataset",
           "ImageTasks", "JsonlDataset", "MultiTaskDataset", "TaskSample", "SyntheticScenes", "vocabulary_texts",
           "write_coco", "write_jsonl", "write_maestro"]
