"""The model out of florence: folders that transformers loads whole (:mod:`.folder`), ONNX folders
for onnxruntime and transformers.js (:mod:`.onnx`), and onnxruntime behind florence's pipeline
(:mod:`.runtime`, imported when used: it needs the ``onnx`` extra)."""
from .folder import IMAGE_TOKEN, image_seq_length, write_model_folder
from .onnx import export_onnx

__all__ = ["IMAGE_TOKEN", "export_onnx", "image_seq_length", "write_model_folder"]
