"""Datasets: the multitask mixer, the built-in synthetic scenes and adapters for the formats users
have (COCO, RefCOCO, Flickr30k-style grounding, VQA, OCR, JSON Lines)."""
from .adapters import (CocoCaptions, CocoDetection, JsonlDataset, OcrDataset, PhraseGrounding, RefCoco,
                       VqaDataset)
from .multitask import ImageTasks, MultiTaskDataset, TaskSample
from .synthetic import SyntheticScenes, vocabulary_texts

__all__ = ["CocoDetection", "CocoCaptions", "RefCoco", "PhraseGrounding", "VqaDataset", "OcrDataset",
           "ImageTasks", "JsonlDataset", "MultiTaskDataset", "TaskSample", "SyntheticScenes", "vocabulary_texts"]
