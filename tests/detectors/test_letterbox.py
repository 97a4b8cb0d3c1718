from __future__ import annotations

import numpy as np
import pytest

from crowdwatch.detectors.letterbox import PAD_VALUE, letterbox, unletterbox_boxes

# (height, width, size) -> ratio, resized (h, w), (left, top) padding
CASES = [
    pytest.param(576, 768, 640, 640 / 768, (480, 640), (0, 80), id="vtest-768x576"),
    pytest.param(480, 640, 640, 1.0, (480, 640), (0, 80), id="vga-no-resize"),
    pytest.param(640, 640, 640, 1.0, (640, 640), (0, 0), id="square-same-size"),
    pytest.param(1080, 810, 640, 640 / 1080, (640, 480), (80, 0), id="portrait-pads-sides"),
    pytest.param(101, 128, 640, 5.0, (505, 640), (0, 67), id="odd-padding-67-68"),
    pytest.param(1080, 1920, 320, 1 / 6, (180, 320), (0, 70), id="full-hd-to-320"),
    pytest.param(10, 2000, 640, 0.32, (3, 640), (0, 318), id="thin-strip"),
]


@pytest.mark.parametrize(("h", "w", "size", "ratio", "resized", "pad"), CASES)
def test_letterbox_geometry(
    h: int, w: int, size: int, ratio: float, resized: tuple[int, int], pad: tuple[int, int]
) -> None:
    image = np.full((h, w, 3), 7, dtype=np.uint8)
    out = letterbox(image, size)
    assert out.image.shape == (size, size, 3)
    assert out.image.dtype == np.uint8
    assert out.ratio == pytest.approx(ratio)
    assert out.pad == pad
    left, top = pad
    rh, rw = resized
    assert (out.image[top : top + rh, left : left + rw] == 7).all()
    # Everything outside the picture is the padding grey.
    assert (out.image == 7).sum() == rh * rw * 3
    assert (out.image == PAD_VALUE).sum() == (size * size - rh * rw) * 3


@pytest.mark.parametrize(("h", "w"), [(576, 768), (101, 128), (1080, 810), (333, 777), (640, 480)])
def test_letterbox_is_pixel_identical_to_ultralytics(h: int, w: int) -> None:
    augment = pytest.importorskip("ultralytics.data.augment")
    rng = np.random.default_rng(h * w)
    image = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    reference = augment.LetterBox(new_shape=(640, 640), auto=False, scaleup=True)(image=image)
    assert np.array_equal(letterbox(image, 640).image, reference)


@pytest.mark.parametrize(("h", "w", "size"), [(576, 768, 640), (101, 128, 640), (1080, 810, 320)])
def test_unletterbox_inverts_the_forward_mapping(h: int, w: int, size: int) -> None:
    boxes = np.array([[0, 0, w, h], [10.5, 20.25, 60, 90], [w / 2, h / 3, w - 1, h - 1]], np.float32)
    lb = letterbox(np.zeros((h, w, 3), np.uint8), size)
    forward = boxes * lb.ratio + np.array([lb.pad[0], lb.pad[1], lb.pad[0], lb.pad[1]], np.float32)
    back = unletterbox_boxes(forward, lb.ratio, lb.pad, (h, w))
    np.testing.assert_allclose(back, boxes, atol=1e-3)


def test_unletterbox_clips_boxes_that_reach_into_the_padding() -> None:
    # 768x576 -> ratio 5/6, 80 px of padding above and below.
    boxed = np.array([[-20, 50, 100, 100], [600, 500, 700, 620]], np.float32)
    back = unletterbox_boxes(boxed, 640 / 768, (0.0, 80.0), (576, 768))
    np.testing.assert_allclose(back[0], [0, 0, 120, 24], atol=1e-4)
    np.testing.assert_allclose(back[1], [720, 504, 768, 576], atol=1e-4)


@pytest.mark.parametrize(("h", "w"), [(333, 1000), (1000, 333), (7, 2000), (641, 639), (480, 640)])
def test_boxes_map_back_as_ultralytics_maps_them(h: int, w: int) -> None:
    """By the gain of each axis after its side was rounded to whole pixels, not by one ratio
    (0.1 px apart on common sizes, whole pixels on thin ones)."""
    ops = pytest.importorskip("ultralytics.utils.ops")
    torch = pytest.importorskip("torch")
    lb = letterbox(np.zeros((h, w, 3), np.uint8), 640)
    boxed = np.array([[10, 20, 300, 400], [100, 300, 620, 340]], np.float32)
    reference = ops.scale_boxes((640, 640), torch.tensor(boxed.astype(np.float64)), (h, w)).numpy()
    np.testing.assert_allclose(unletterbox_boxes(boxed, lb.gain, lb.pad, (h, w)), reference, atol=2e-3)
