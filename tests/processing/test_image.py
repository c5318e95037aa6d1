"""Image preprocessing against transformers' image processor configured as published for
Florence-2 (PIL backend: bicubic 768x768, no crop, 1/255, ImageNet mean/std, RGB conversion)."""
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata

from florence.processing import ImageProcessor, load_image

TOL = 1e-5


@pytest.fixture(scope="module")
def reference():
    from transformers import CLIPImageProcessorPil

    return CLIPImageProcessorPil(
        do_resize=True, size={"height": 768, "width": 768}, resample=Image.Resampling.BICUBIC,
        do_center_crop=False, do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
        image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225], do_convert_rgb=True)


def ref_pixels(reference, image):
    return reference(image, return_tensors="pt")["pixel_values"]


def photographs():
    return {"astronaut": skdata.astronaut(), "coffee": skdata.coffee(), "chelsea": skdata.chelsea(),
            "camera": skdata.camera()}


@pytest.mark.parametrize("name", list(photographs()))
def test_real_photographs(reference, name):
    image = Image.fromarray(photographs()[name])
    got = ImageProcessor()(image)
    assert got.shape == (1, 3, 768, 768) and got.dtype == torch.float32
    assert (got - ref_pixels(reference, image)).abs().max() <= TOL


def mode_images():
    rgb = Image.fromarray(skdata.chelsea())
    rgba = rgb.convert("RGBA")
    alpha = np.tile(np.linspace(0, 255, rgb.width, dtype=np.uint8), (rgb.height, 1))
    rgba.putalpha(Image.fromarray(alpha))
    palette_transparent = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    palette_transparent.info["transparency"] = 3
    sixteen = Image.fromarray((skdata.camera().astype(np.uint16) // 2 + 40))  # I;16 within 0..255
    return {
        "L": rgb.convert("L"), "LA": rgba.convert("LA"), "P": rgb.convert("P", palette=Image.Palette.ADAPTIVE),
        "P+transparency": palette_transparent, "RGBA": rgba, "CMYK": rgb.convert("CMYK"), "1": rgb.convert("1"),
        "I;16": sixteen, "I;16 clipped": Image.fromarray(skdata.camera().astype(np.uint16) * 200),
    }


@pytest.mark.parametrize("mode", list(mode_images()))
def test_modes(reference, mode):
    image = mode_images()[mode]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = ImageProcessor()(image)
    clip_warnings = [w for w in caught if "16-bit" in str(w.message)]
    assert len(clip_warnings) == (mode == "I;16 clipped")  # the published pipeline clips: say so
    assert (got - ref_pixels(reference, image)).abs().max() <= TOL


def test_16bit_scaling_option():
    a = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)
    scaled = ImageProcessor(scale_16bit=True).prepare(Image.fromarray(a))[0]
    expected = ImageProcessor().prepare(Image.fromarray((a >> 8).astype(np.uint8)))[0]
    assert np.array_equal(scaled, expected)


def test_arrays_tensors_and_paths_equal_pil(reference, tmp_path):
    rgb = skdata.coffee()
    want = ref_pixels(reference, Image.fromarray(rgb))
    proc = ImageProcessor()
    Image.fromarray(rgb).save(tmp_path / "coffee.png")
    for source in (rgb, torch.from_numpy(rgb).permute(2, 0, 1), tmp_path / "coffee.png", str(tmp_path / "coffee.png")):
        assert (proc(source) - want).abs().max() <= TOL
    gray = skdata.camera()
    assert (proc(gray) - ref_pixels(reference, Image.fromarray(gray))).abs().max() <= TOL


def test_exif_orientation_applied(reference, tmp_path):
    from transformers.image_utils import load_image as hf_load_image

    image = Image.fromarray(skdata.astronaut()[:, :400])  # 512 x 400, not square
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif, quality=95)
    loaded = load_image(path)
    assert loaded.size == (512, 400)  # width and height swapped by the orientation tag
    pixels, sizes = ImageProcessor()([path], return_sizes=True)
    assert sizes == [(512, 400)]
    assert (pixels - ref_pixels(reference, hf_load_image(str(path)))).abs().max() <= TOL


def test_batch_and_sizes():
    images = [Image.new("RGB", (640, 480), "red"), Image.new("L", (100, 300))]
    pixels, sizes = ImageProcessor()(images, return_sizes=True)
    assert pixels.shape == (2, 3, 768, 768) and sizes == [(640, 480), (100, 300)]


@pytest.mark.parametrize("bad,match", [
    (np.full((4, 4, 3), 2.0, dtype=np.float32), r"in \[0, 1\].*got 2\.\.2"),
    (np.full((4, 4), np.nan, dtype=np.float32), "finite"),
    (np.zeros((4, 4, 3), dtype=np.int32), "uint8, uint16 or float"),
    (np.zeros((0, 0), dtype=np.uint8), "no pixels"),
    (np.zeros((0, 5, 3), dtype=np.uint8), "no pixels"),
    (torch.zeros(3, 0, 4), "no pixels"),
    (Image.new("RGB", (0, 4)), "0x4 has no pixels"),
    (np.zeros((4, 4, 2), dtype=np.uint8), "expected"),
    (123, "unsupported image type"),
])
def test_bad_inputs(bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        ImageProcessor()(bad)


def write_png16(path, rgb16):
    """A 48-bit RGB PNG written from the PNG specification (PIL cannot write one)."""
    import struct
    import zlib

    h, w, _ = rgb16.shape
    chunk = lambda kind, data: (struct.pack(">I", len(data)) + kind + data  # noqa: E731
                                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in rgb16)  # filter 0 per row
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def test_float_images_in_unit_range_and_16bit_rgb():
    """torchvision's ToTensor output (float CHW in [0, 1]) and float HWC arrays give the uint8 image
    back exactly; a 16-bit RGB array gives what PIL reads from the same 16-bit PNG file."""
    from torchvision.transforms.functional import to_tensor

    rgb = skdata.astronaut()[:96, :128]
    for given in (to_tensor(rgb), to_tensor(rgb).permute(1, 2, 0).numpy(), to_tensor(rgb).double()):
        assert np.array_equal(np.asarray(load_image(given)), rgb)
    deep = (rgb.astype(np.uint16) << 8) | np.arange(128, dtype=np.uint16)[None, :, None]  # low byte varies
    assert np.array_equal(np.asarray(load_image(deep)), rgb)


def test_16bit_rgb_array_equals_the_16bit_png_file(tmp_path):
    deep = (skdata.astronaut()[:64, :64].astype(np.uint16) << 8) | np.arange(64, dtype=np.uint16)[:, None, None] * 4
    write_png16(tmp_path / "deep.png", deep)
    with Image.open(tmp_path / "deep.png") as im:
        assert im.mode == "RGB"  # PIL reads 16-bit RGB into 8 bits
        from_file = np.asarray(im.convert("RGB"))
    assert np.array_equal(np.asarray(load_image(deep)), from_file)
    assert np.array_equal(np.asarray(load_image(tmp_path / "deep.png")), from_file)


def test_corrupt_and_missing_files(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(ValueError, match="broken.jpg"):
        ImageProcessor()(tmp_path / "broken.jpg")
    with pytest.raises(FileNotFoundError, match="missing.png"):
        ImageProcessor()(tmp_path / "missing.png")


def test_preprocessor_config_round_trip_and_published_default(tmp_path):
    """``preprocessor_config.json`` (the published checkpoints' file) carries the image side; without
    it a folder is read at the published 768 px; a non-square or unreadable one is an error."""
    import json

    from florence.processing.image import ImageProcessor

    ImageProcessor(size=96).save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert cfg["size"] == {"height": 96, "width": 96} and cfg["image_processor_type"] == "CLIPImageProcessor"
    back = ImageProcessor.from_pretrained(tmp_path)
    assert back.size == 96 and back.mean.tolist() == ImageProcessor().mean.tolist()
    assert ImageProcessor.from_pretrained(tmp_path, size=64).size == 64  # an explicit size wins
    assert ImageProcessor.from_pretrained(tmp_path / "nothing-here").size == 768
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(dict(cfg, size={"height": 768, "width": 512})))
    with pytest.raises(ValueError, match="square"):
        ImageProcessor.from_pretrained(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text("{not json")
    with pytest.raises(ValueError, match="preprocessor_config.json is not a preprocessor config"):
        ImageProcessor.from_pretrained(tmp_path)


def test_images_in_tar_shards_are_read_by_tar_and_key(tmp_path):
    """``TAR:KEY`` names a sample's image in a local tar (as the data engine names images it read from
    tar shards): the same pixels as the file; keys with colons; a missing key, a corrupt image and a file
    that is no tar each an error naming what is wrong."""
    import io
    import tarfile

    from florence.processing.image import tar_member

    photo = Image.fromarray(skdata.astronaut()[::8, ::8])
    photo.save(tmp_path / "photo.png")
    tar = tmp_path / "shard.tar"
    with tarfile.open(tar, "w") as f:
        for name, data in (("a:1.json", b"{}"), ("a:1.png", (tmp_path / "photo.png").read_bytes()),
                           ("b.jpg", b"not a jpeg")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            f.addfile(info, io.BytesIO(data))
    assert np.array_equal(np.asarray(load_image(f"{tar}:a:1")), np.asarray(photo))
    assert tar_member(f"{tar}:a:1")[1].name == "a:1.png" and tar_member(str(tmp_path / "photo.png")) is None
    with pytest.raises(FileNotFoundError, match=f"{tar} holds no image of a sample 'c'"):
        load_image(f"{tar}:c")
    with pytest.raises(ValueError, match=f"cannot read image {tar}:b: "):
        load_image(f"{tar}:b")
    (tmp_path / "junk.tar").write_bytes(b"\x01" * 1000)
    with pytest.raises(ValueError, match="junk.tar: not a readable tar file"):
        load_image(f"{tmp_path / 'junk.tar'}:0")
