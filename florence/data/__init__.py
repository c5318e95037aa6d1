"""Datasets: the multitask mixer and the built-in synthetic scenes."""
from .multitask import MultiTaskDataset, TaskSample
from .synthetic import SyntheticScenes, vocabulary_texts

__all__ = ["MultiTaskDataset", "TaskSample", "SyntheticScenes", "vocabulary_texts"]
