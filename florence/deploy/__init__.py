"""The model out of florence: folders that transformers loads whole (:mod:`.folder`)."""
from .folder import IMAGE_TOKEN, image_seq_length, write_model_folder

__all__ = ["IMAGE_TOKEN", "image_seq_length", "write_model_folder"]
