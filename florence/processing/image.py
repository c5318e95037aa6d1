"""Image preprocessing exactly as published for Florence-2.

RGB conversion (transparency composited onto white, as transformers' ``convert_to_rgb``), EXIF
orientation applied, resize to 768 x 768 with PIL bicubic (no aspect preservation, no crop),
scale by 1/255, normalise with ImageNet mean/std. Inputs: PIL images, file paths, numpy arrays
(H, W[, C], uint8 or uint16) and torch tensors (C, H, W or H, W, uint8 or uint16).
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import os
from pathlib import Path
import re
from stat import S_ISREG
import warnings

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["ImageProcessor", "load_image", "to_rgb", "expand_images", "image_files", "tar_member",
           "open_tar_member", "TAR_IMAGE_EXTENSIONS", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_image(source) -> Image.Image:
    """A PIL image from a path (or an open binary file), PIL image, array or tensor; EXIF orientation
    applied to files.

    Arrays are (H, W) or (H, W, 1|3|4); tensors also (1|3|4, H, W) (torchvision's layout). Pixel
    values: uint8; uint16 (single channel: kept 16-bit, see :func:`to_rgb`; 3 or 4 channels: their top
    byte, as PIL reads a 16-bit RGB file); floats in [0, 1] (torchvision's ``ToTensor`` convention,
    rounded to 8 bits). A path ``TAR:KEY`` that is no file names an image in a tar shard
    (:func:`tar_member`)."""
    if isinstance(source, (str, os.PathLike, io.IOBase)):
        found = tar_member(source) if isinstance(source, str) and not os.path.exists(source) else None
        try:
            with open_tar_member(found) if found else contextlib.nullcontext(source) as opened, \
                    Image.open(opened) as im:
                im.load()
                return _nonempty(ImageOps.exif_transpose(im), source)
        except FileNotFoundError:
            raise FileNotFoundError(f"image file not found: {source}") from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            raise ValueError(f"cannot read image {source}: {e} (corrupt or not an image)") from e
    if isinstance(source, Image.Image):
        return _nonempty(source, "PIL image")
    if isinstance(source, torch.Tensor):
        t = source.detach().cpu()
        if t.ndim == 3 and t.shape[0] in (1, 3, 4) and t.shape[-1] not in (1, 3, 4):
            t = t.permute(1, 2, 0)  # (C, H, W) -> (H, W, C), torchvision's convention
        source = t.float().numpy() if t.is_floating_point() else t.numpy()
    if isinstance(source, np.ndarray):
        a = source
        if a.ndim == 3 and a.shape[-1] == 1:
            a = a[..., 0]
        if not (a.ndim == 2 or (a.ndim == 3 and a.shape[-1] in (3, 4))):
            raise ValueError(f"image array of shape {source.shape}: expected (H, W), (H, W, 1|3|4) "
                             "or a (1|3|4, H, W) tensor")
        if a.shape[0] == 0 or a.shape[1] == 0:
            raise ValueError(f"image array of shape {source.shape} has no pixels")
        if np.issubdtype(a.dtype, np.floating):
            finite = np.isfinite(a)
            lo, hi = (float(a[finite].min()), float(a[finite].max())) if finite.any() else (math.nan, math.nan)
            if not (finite.all() and 0 <= lo and hi <= 1):
                raise ValueError(f"float image values must be finite and in [0, 1] (torchvision's ToTensor "
                                 f"convention), got {lo:g}..{hi:g}; for 0-255 values pass x.astype(np.uint8)")
            a = (a * 255).round().astype(np.uint8)
        elif a.dtype == np.uint16 and a.ndim == 3:
            a = (a >> 8).astype(np.uint8)  # PIL has no 16-bit RGB mode: it reads such files this way
        elif a.dtype not in (np.uint8, np.uint16):
            raise ValueError(f"image arrays must be uint8, uint16 or float in [0, 1], got {a.dtype}")
        return Image.fromarray(np.ascontiguousarray(a))  # uint16 (H, W): mode I;16
    raise TypeError(f"unsupported image type {type(source).__name__}: pass a PIL image, a path, "
                    "a numpy array or a torch tensor")


def _nonempty(image: Image.Image, name) -> Image.Image:
    if image.width == 0 or image.height == 0:
        raise ValueError(f"{name}: image of size {image.width}x{image.height} has no pixels")
    return image


def to_rgb(image: Image.Image, scale_16bit: bool = False) -> Image.Image:
    """RGB as the published pipeline makes it: transparency composited onto white, any other mode
    through PIL's ``convert``. PIL clips 16-bit pixel values at 255 (the published behaviour);
    ``scale_16bit=True`` maps them to 8 bits by their top byte instead."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "I;16N") and scale_16bit:
        a = np.asarray(image).astype(np.uint32)
        image = Image.fromarray((np.clip(a, 0, 65535) >> 8).astype(np.uint8))
    elif image.mode in ("I;16", "I;16B", "I;16L", "I", "I;16N") and np.asarray(image).max() > 255:
        warnings.warn("a 16-bit image has values above 255, which the published Florence-2 preprocessing "
                      "clips to white; pass scale_16bit=True to scale it to 8 bits instead", stacklevel=3)
    if image.mode == "RGB":
        return image
    if "A" in image.getbands() or image.info.get("transparency") is not None:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


class ImageProcessor:
    """Images -> normalised ``pixel_values`` (B, 3, size, size) float32.

    >>> ImageProcessor()(Image.new("RGB", (640, 480))).shape
    torch.Size([1, 3, 768, 768])
    """

    def __init__(self, size: int = 768, mean=IMAGENET_MEAN, std=IMAGENET_STD, scale_16bit: bool = False):
        self.size = size
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        self.scale_16bit = scale_16bit

    CONFIG = "preprocessor_config.json"  # the published checkpoints' file (CLIPImageProcessor's keys)

    @classmethod
    def from_pretrained(cls, folder, **overrides) -> "ImageProcessor":
        """The preprocessing a checkpoint folder's ``preprocessor_config.json`` states (size, mean,
        std; the published values without the file); ``overrides`` win."""
        path = Path(folder) / cls.CONFIG
        kwargs = {}
        if path.is_file():
            try:
                cfg = json.loads(path.read_text())
                size = cfg.get("size", {"height": 768, "width": 768})
                size = size if isinstance(size, int) else (size["height"], size["width"])
            except (ValueError, KeyError, TypeError) as e:
                raise ValueError(f"{path} is not a preprocessor config with size {{'height', 'width'}}: {e}") from None
            if not isinstance(size, int) and (size[0] != size[1] or not isinstance(size[0], int)):
                raise ValueError(f"{path}: Florence-2 resizes to a square; size {cfg['size']} is not one")
            kwargs = dict(size=size if isinstance(size, int) else size[0], mean=cfg.get("image_mean", IMAGENET_MEAN),
                          std=cfg.get("image_std", IMAGENET_STD))
        return cls(**{**kwargs, **overrides})

    def save_pretrained(self, folder) -> None:
        """``preprocessor_config.json`` in the published checkpoints' format."""
        Path(folder).mkdir(parents=True, exist_ok=True)
        cfg = {"image_processor_type": "CLIPImageProcessor", "processor_class": "Florence2Processor",
               "do_resize": True, "size": {"height": self.size, "width": self.size}, "resample": 3,
               "do_center_crop": False, "crop_size": {"height": self.size, "width": self.size},
               "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
               "image_mean": [float(v) for v in self.mean], "image_std": [float(v) for v in self.std],
               "do_convert_rgb": None}
        (Path(folder) / self.CONFIG).write_text(json.dumps(cfg, indent=2) + "\n")

    def prepare(self, image) -> tuple[np.ndarray, tuple[int, int]]:
        """One image -> ((3, size, size) float32 array, original (width, height))."""
        pil = to_rgb(load_image(image), self.scale_16bit)
        original = pil.size
        resized = pil.resize((self.size, self.size), Image.Resampling.BICUBIC)
        x = np.asarray(resized, dtype=np.float32) * np.float32(1 / 255)  # (size, size, 3)
        x = (x - self.mean) / self.std
        return x.transpose(2, 0, 1), original

    def __call__(self, images, return_sizes: bool = False):
        if not isinstance(images, (list, tuple)):
            images = [images]
        if not images:
            raise ValueError("no images given")
        arrays, sizes = zip(*(self.prepare(im) for im in images))
        pixel_values = torch.from_numpy(np.stack(arrays))
        return (pixel_values, list(sizes)) if return_sizes else pixel_values


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


LISTING_SUFFIXES = (".txt", ".lst")


def _is_listing(images) -> bool:
    return isinstance(images, (str, os.PathLike)) and str(images).lower().endswith(LISTING_SUFFIXES) \
        and Path(images).is_file()


def expand_images(images) -> tuple[list, bool]:
    """(list of image sources, whether a single image was given). A folder becomes its image files,
    sorted by name; a listing (``.txt``, ``.lst``) the images it names, one a line (paths relative to
    its folder; blank lines and lines starting with ``#`` skipped)."""
    if isinstance(images, (str, os.PathLike)) and Path(images).is_dir():
        files = sorted(p for p in Path(images).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise FileNotFoundError(f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in folder {images}")
        return [str(p) for p in files], False
    if _is_listing(images):
        lines = (line.strip() for line in Path(images).read_text(encoding="utf-8-sig").splitlines())
        files = [str(Path(images).parent / line) for line in lines if line and not line.startswith("#")]
        if not files:
            raise ValueError(f"image listing {images} names no image (one path a line)")
        return files, False
    if isinstance(images, (list, tuple)):
        return list(images), False
    return [images], True


TAR_IMAGE_EXTENSIONS = ("jpg", "png", "webp", "bmp", "tiff", "gif")  # a webdataset sample's image members
_TAR_KEY = re.compile(r"^((?:.*/|)[^./]+)\.([^/]*)$")  # a member KEY.EXTENSION (webdataset's: KEY to the first dot)
_TAR_INDEX: dict[tuple, dict] = {}  # (tar, mtime, size) -> {key: the TarInfo of its sample's first image member}


def tar_member(name: str):
    """``(tar, TarInfo)`` of the image named ``TAR:KEY`` (how the data engine names an image it read from
    a tar shard: a local tar file's path, a colon, the sample's key; the member is the sample's first
    with an extension of ``TAR_IMAGE_EXTENSIONS``, as :func:`florence.data.shards.image_member` picks
    it); None when ``name`` names no tar file. A tar's headers are indexed once per process, so reading
    an image (:func:`open_tar_member`) is a seek and a read. FileNotFoundError: the tar holds no such
    sample; ValueError: the file is no readable tar."""
    tar, colon, key = str(name).rpartition(".tar:")
    tar += ".tar"
    try:
        stat = os.stat(tar) if colon else None
    except OSError:
        stat = None
    if stat is None or not S_ISREG(stat.st_mode):
        return None
    index = _TAR_INDEX.get((tar, stat.st_mtime_ns, stat.st_size))
    if index is None:
        import tarfile

        index = {}
        try:
            with tarfile.open(tar, "r:") as f:
                for member in f:
                    found = _TAR_KEY.match(member.name)
                    if member.isfile() and found and found[2] in TAR_IMAGE_EXTENSIONS:
                        index.setdefault(found[1], member)
        except tarfile.TarError as e:
            raise ValueError(f"{tar}: not a readable tar file ({e})") from None
        _TAR_INDEX[(tar, stat.st_mtime_ns, stat.st_size)] = index
    if key not in index:
        raise FileNotFoundError(f"image file not found: {name} ({tar} holds no image of a sample {key!r})")
    return tar, index[key]


@contextlib.contextmanager
def open_tar_member(found):
    """``with open_tar_member(tar_member(name)) as f``: the member's bytes as a file, read lazily."""
    import tarfile

    tar, member = found
    with tarfile.open(tar, "r:") as archive, archive.extractfile(member) as f:  # opening reads one header
        yield f


def image_files(items) -> list[str]:
    """Image sources of a list of files, folders and listings, in order (a folder: its image files by
    name; a listing: the images it names, :func:`expand_images`)."""
    out = []
    for item in items:
        many = isinstance(item, (str, os.PathLike)) and (Path(item).is_dir() or _is_listing(item))
        out.extend(expand_images(item)[0] if many else [item])
    return out
