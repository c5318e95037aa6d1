"""Image preprocessing, tokenizer and the location-token quantizer."""
from .image import IMAGENET_MEAN, IMAGENET_STD, ImageProcessor, load_image, to_rgb
from .processor import Florence2Processor
from .quantizer import NUM_BINS, Quantizer
from .tokenizer import FLORENCE_TOKENS, add_florence_tokens, build_tokenizer, load_tokenizer

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "ImageProcessor", "load_image", "to_rgb", "Florence2Processor",
           "NUM_BINS", "Quantizer", "FLORENCE_TOKENS", "add_florence_tokens", "build_tokenizer",
           "load_tokenizer"]
