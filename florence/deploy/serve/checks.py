"""What a request must be: its fields, the image (pixel count read from the header before any pixel
is decoded), the task's input and the generation options within the server's limits. Each check
fails with an HTTP error that names the problem; nothing here needs a model or a server."""
from __future__ import annotations

import base64
import binascii
import io
import uuid
from dataclasses import dataclass

from PIL import Image
from pydantic import BaseModel, ConfigDict, StrictBool
from starlette.exceptions import HTTPException

GENERATION_OPTIONS = ("num_beams", "max_new_tokens")


@dataclass(frozen=True)
class Limits:
    """What one server accepts. ``max_queue`` counts images waiting or running in the HTTP process;
    a request that would pass it gets 503 with Retry-After. ``timeout``: seconds from arrival to
    answer (504 after it)."""
    max_request_bytes: int = 32 << 20
    max_pixels: int = 40_000_000
    max_queue: int = 64
    max_batch_items: int = 32
    timeout: float = 120.0
    max_num_beams: int = 3
    max_new_tokens: int = 1024
    max_text_chars: int = 1000  # a prompt longer than the encoder's positions would fail its whole batch
    max_tiles: int = 64  # tiles of one image a tiled request may make

    def __post_init__(self):
        if self.max_batch_items > self.max_queue:
            raise ValueError(f"max_batch_items ({self.max_batch_items}) must not exceed max_queue ({self.max_queue}): "
                             "a batch request that large could never be admitted")


# formats an upload may have (PIL's other plugins, EPS through Ghostscript among them, are not reachable)
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")


class PredictRequest(BaseModel):
    """``POST /v1/predict`` as JSON (multipart takes the same fields, the image as a file)."""
    model_config = ConfigDict(extra="forbid")
    image: str  # base64 (a data: URL prefix is allowed)
    task: str  # token or name, e.g. "<OD>" or "od"
    # text input, several (classes or phrases of one image, merged into one result), or a pixel box
    # [x1, y1, x2, y2] for region tasks
    text: str | list[str] | list[float] | None = None
    num_beams: int | None = None
    max_new_tokens: int | None = None
    score_threshold: float | None = None  # keep items scored at least this
    nms: float | None = None  # class-aware NMS at this IoU
    classes: list[str] | None = None  # labels the output may use (detection, grounding, OCR regions)
    grammar: StrictBool | None = None  # constrain decoding to the task's grammar (the server's default otherwise)
    tile: int | None = None  # read the image in tiles of this many pixels (florence.tiling)
    tile_overlap: float | None = None  # their overlap, a fraction of the tile (default 0.2)


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[PredictRequest]


def fail(status: int, message: str, **headers) -> HTTPException:
    return HTTPException(status_code=status, detail=message, headers=headers or None)


def read_image(data: bytes, limits: Limits, what: str) -> Image.Image:
    """The decoded image, or a 400/413 naming ``what``. The pixel count is read from the header
    before any pixel is decoded."""
    from ...processing.image import load_image

    if not data:
        raise fail(400, f"{what}: empty image")
    buf = io.BytesIO(data)
    try:
        with Image.open(buf, formats=IMAGE_FORMATS) as im:
            width, height = im.size
    except Image.DecompressionBombError as e:
        raise fail(413, f"{what}: {e}") from None
    except Exception as e:  # noqa: BLE001  anything PIL cannot identify is a bad image
        message = str(e).replace(repr(buf), "the upload")
        raise fail(400, f"{what}: not an image in a format the server reads ({', '.join(IMAGE_FORMATS)}; "
                        f"{type(e).__name__}: {message})") from None
    if width * height > limits.max_pixels:
        raise fail(413, f"{what}: {width}x{height} = {width * height} pixels, over the server's limit of "
                         f"{limits.max_pixels}")
    buf = io.BytesIO(data)
    try:
        return load_image(buf)
    except Exception as e:  # noqa: BLE001  a malformed file may fail anywhere in its decoder
        raise fail(400, f"{what}: cannot decode the image ({type(e).__name__}: "
                        f"{str(e).replace(repr(buf), 'the upload')})") from None


def decode_base64(value: str, what: str) -> bytes:
    if value.startswith("data:"):
        value = value.partition(",")[2]
    if value.startswith(("http://", "https://", "file:")):
        raise fail(400, f"{what}: the server never fetches URLs: send the image's bytes (base64 or a file upload)")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise fail(400, f"{what}: not valid base64 ({e})") from None


def read_item(fields: dict, data: bytes, limits: Limits, what: str) -> dict:
    """One checked queue item from a request's fields and image bytes."""
    from ...regions import check_threshold
    from ...task.base import check_classes
    from ...task import TaskError, box_or_text, get_task

    if not fields.get("task"):
        raise fail(400, f"{what}: no task (e.g. task=<OD>; GET /v1/tasks lists them)")
    try:
        task = get_task(fields["task"])
    except TaskError as e:
        raise fail(400, f"{what}: {e.args[0] if e.args else e} (GET /v1/tasks lists the tasks)") from None
    text = fields.get("text")
    if task.input_kind is None and text not in (None, ""):
        raise fail(400, f"{what}: {task.token} takes no text input, got {text!r:.100}")
    if task.input_kind is not None and text in (None, ""):
        need = "a region [x1, y1, x2, y2] in pixels" if task.input_kind == "region" else "a text input"
        raise fail(400, f"{what}: {task.token} needs {need} ('text')")
    if task.input_kind is None:
        text = None
    elif task.input_kind == "region" and isinstance(text, str):
        text = box_or_text(text)  # anything else than a box or location tokens fails in task.prompt below
    elif task.input_kind == "text":
        several = isinstance(text, list) and task.takes_several_inputs
        texts = text if several else [text]
        if not texts or not all(isinstance(t, str) and t for t in texts):
            need = "a string or a list of strings" if task.takes_several_inputs else "a string"
            raise fail(400, f"{what}: {task.token} needs a text input ({need}), got {text!r:.100}")
        if len(texts) > limits.max_batch_items:
            raise fail(400, f"{what}: {len(texts)} text inputs, over the server's limit of {limits.max_batch_items}")
        longest = max(len(t) for t in texts)
        if longest > limits.max_text_chars:
            raise fail(400, f"{what}: a text input of {longest} characters, over the server's limit of "
                            f"{limits.max_text_chars}")
    generation = {}
    for name, top in (("num_beams", limits.max_num_beams), ("max_new_tokens", limits.max_new_tokens)):
        value = fields.get(name)
        if value is None or value == "":
            continue
        try:
            value = int(value)
        except (TypeError, ValueError):
            raise fail(400, f"{what}: {name} must be an integer, got {value!r:.50}") from None
        if not 1 <= value <= top:
            raise fail(400, f"{what}: {name} must be between 1 and {top} on this server, got {value}")
        generation[name] = value
    classes = fields.get("classes")
    if classes not in (None, "", []):
        if isinstance(classes, str):  # multipart: comma-separated
            classes = [c.strip() for c in classes.split(",")]
        if task.label_locations is None:
            raise fail(400, f"{what}: {task.token} does not write 'label + location tokens' items: classes does "
                            "not apply to it")
        try:
            classes = check_classes(classes)
        except ValueError as e:
            raise fail(400, f"{what}: {e}") from None
        if sum(map(len, classes)) > limits.max_text_chars * 10:
            raise fail(400, f"{what}: classes are {sum(map(len, classes))} characters, more than this server's "
                            f"{limits.max_text_chars * 10}")
        generation["classes"] = tuple(classes)
    grammar = fields.get("grammar")
    if grammar not in (None, ""):
        if isinstance(grammar, str) and grammar.lower() in ("true", "false", "1", "0"):  # multipart
            grammar = grammar.lower() in ("true", "1")
        if not isinstance(grammar, bool):
            raise fail(400, f"{what}: grammar must be true or false, got {grammar!r:.50}")
        generation["grammar"] = grammar
    selection = {}
    for name, low_open in (("score_threshold", False), ("nms", True)):
        try:
            selection[name] = check_threshold(None if fields.get(name) == "" else fields.get(name), name, low_open)
        except ValueError as e:
            raise fail(400, f"{what}: {e}") from None
    image = read_image(data, limits, what)
    tiling = _tiling(fields, task, image.size, limits, what)
    if tiling is not None:
        generation["tile"] = tiling
    try:
        for t in (text if isinstance(text, list) and task.input_kind == "text" else [text]):
            task.prompt(t, image.size)  # a region the task cannot take fails here, not in the batch
    except TaskError as e:
        raise fail(400, f"{what}: {e}") from None
    return {"id": uuid.uuid4().hex, "image": image, "task": task.token, "text": text,
            "generation": tuple(sorted(generation.items())), "selection": selection}


def _tiling(fields: dict, task, image_size, limits: Limits, what: str) -> tuple | None:
    """``(size, overlap)`` of a tiled request (None: not tiled), or a 400 naming what is wrong."""
    from ...task import TaskError
    from ...tiling import check_tiling, tiled_task, windows

    overlap = fields.get("tile_overlap")
    if fields.get("tile") in (None, ""):
        if overlap not in (None, ""):
            raise fail(400, f"{what}: tile_overlap needs tile (the tile size in pixels)")
        return None
    try:
        size = float(fields["tile"]) if isinstance(fields["tile"], str) else fields["tile"]  # multipart: text
        tiling = check_tiling(dict(size=size, overlap=0.2 if overlap in (None, "") else float(overlap)))
        tiled_task(task)
    except (TypeError, ValueError) as e:  # TaskError is a ValueError
        raise fail(400, f"{what}: tile: {e}") from None
    n = len(windows(image_size, tiling))
    if n > limits.max_tiles:
        raise fail(400, f"{what}: tile {tiling.size} cuts this {image_size[0]}x{image_size[1]} image into {n} tiles, "
                        f"more than this server's {limits.max_tiles}: use larger tiles")
    return tiling.size, tiling.overlap


def filter_scores(result, task, threshold=None, nms=None):
    """``task``'s output without its regions scored below ``threshold``, then class-aware NMS at IoU
    ``nms`` (:func:`florence.regions.select`; an output without scores stays whole)."""
    from ...regions import select

    return select(result, task, score_threshold=threshold, nms=nms)
