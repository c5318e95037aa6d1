"""Quantizer: floor to 1000 bins, bin-centre dequantization, never <loc_1000>, clamping."""
import numpy as np
import pytest

from florence.processing import Quantizer
from florence.processing.quantizer import LOC_TOKEN

rng = np.random.default_rng(0)
SIZES = [(int(w), int(h)) for w, h in rng.integers(1, 5000, size=(20, 2))] + [(1, 1), (1000, 1000), (640, 480)]


def random_points(size, n):
    w, h = size
    return np.stack([rng.uniform(0, w, n), rng.uniform(0, h, n)], 1).reshape(-1)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("kind,n_points", [("box", 2), ("quad", 4), ("polygon", 7)])
def test_round_trip_within_one_bin(size, kind, n_points):
    q = Quantizer()
    for _ in range(50):
        coords = random_points(size, n_points)
        bins = getattr(q, f"quantize_{kind}")(coords, size)
        assert all(0 <= b <= 999 for b in bins)
        back = np.asarray(q.dequantize(bins, size))
        bin_w = np.tile([size[0] / 1000, size[1] / 1000], n_points)
        assert (np.abs(back - coords) <= bin_w / 2 + 1e-9 * max(size)).all()  # at most half a bin: centres


def test_edges_clamp_and_never_emit_loc_1000():
    q = Quantizer()
    w, h = 640, 480
    assert q.quantize_box([0, 0, w, h], (w, h)) == [0, 0, 999, 999]
    assert q.quantize_box([-50, -1, 10 * w, h + 0.5], (w, h)) == [0, 0, 999, 999]
    text = q.tokens(random_points((w, h), 500).tolist() + [w, h, w + 1, h * 2], (w, h))
    assert "<loc_1000>" not in text and len(LOC_TOKEN.findall(text)) == 1004


def test_known_values():
    q = Quantizer()
    assert q.quantize([0.639, 0.4799, 0.64, 0.48], (640, 480)) == [0, 0, 1, 1]
    assert q.dequantize([0, 999], (640, 480)) == [0.32, 479.76]
    assert q.box_tokens([10, 20, 300, 400], (640, 480)) == "<loc_15><loc_41><loc_468><loc_833>"


def test_polygon_odd_value_dropped_and_parse_is_lenient():
    q = Quantizer()
    assert len(q.quantize_polygon([1, 2, 3, 4, 5], (10, 10))) == 4
    assert q.parse("cat<loc_1><loc_1000><loc_999>junk<loc_") == [1, 999]


@pytest.mark.parametrize("bad", [[1, 2, 3], [1, 2, 3, float("nan")]])
def test_bad_boxes(bad):
    with pytest.raises(ValueError):
        Quantizer().quantize_box(bad, (10, 10))


def test_bad_size():
    with pytest.raises(ValueError, match="image size"):
        Quantizer().quantize([1, 2], (0, 10))
