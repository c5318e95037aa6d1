"""Image preprocessing, tokenizer and the location-token quantizer (names load on first use: the
quantizer, which every task uses, needs neither torch nor transformers)."""
from typing import TYPE_CHECKING

from .._lazy import lazy_exports

_EXPORTS = {
    "IMAGENET_MEAN": ".image", "IMAGENET_STD": ".image", "ImageProcessor": ".image", "load_image": ".image",
    "to_rgb": ".image", "Florence2Processor": ".processor", "NUM_BINS": ".quantizer", "Quantizer": ".quantizer",
    "FLORENCE_TOKENS": ".tokenizer", "add_florence_tokens": ".tokenizer", "build_tokenizer": ".tokenizer",
    "load_tokenizer": ".tokenizer",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)

if TYPE_CHECKING:
    from .image import IMAGENET_MEAN, IMAGENET_STD, ImageProcessor, load_image, to_rgb
    from .processor import Florence2Processor
    from .quantizer import NUM_BINS, Quantizer
    from .tokenizer import FLORENCE_TOKENS, add_florence_tokens, build_tokenizer, load_tokenizer
