"""TensorFlow's bilinear resize rules, checked on pictures whose answer is known."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from crowdwatch.detectors.tf_resize import resize_bilinear

RNG = np.random.default_rng(3)
IMAGE = RNG.integers(0, 256, (6, 8, 3), dtype=np.uint8)


def test_same_size_is_the_identity() -> None:
    out = resize_bilinear(IMAGE, (6, 8))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, IMAGE.astype(np.float32))


def test_legacy_halving_samples_even_pixels() -> None:
    # TF1 (no align_corners, no half-pixel centres): source = destination * 2, exactly on pixels.
    np.testing.assert_array_equal(resize_bilinear(IMAGE, (3, 4)), IMAGE[::2, ::2].astype(np.float32))


def test_legacy_upscaling_interpolates_and_repeats_the_last_pixel() -> None:
    row = np.asarray([[[0], [10]]], np.uint8)  # 1 x 2 x 1
    out = resize_bilinear(row, (1, 4))
    np.testing.assert_allclose(out.reshape(-1), [0.0, 5.0, 10.0, 10.0])


def test_align_corners_maps_corner_to_corner() -> None:
    row = np.asarray([[[0], [30]]], np.uint8)
    np.testing.assert_allclose(resize_bilinear(row, (1, 4), align_corners=True).reshape(-1), [0, 10, 20, 30])


@pytest.mark.parametrize("size", [(12, 16), (9, 20)])
def test_half_pixel_upscaling_matches_opencv(size: tuple[int, int]) -> None:
    # Upscaling, OpenCV's INTER_LINEAR uses half-pixel centres and no antialiasing, like TF2's
    # half_pixel_centers=True.
    expected = cv2.resize(IMAGE.astype(np.float32), (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    got = resize_bilinear(IMAGE, size, half_pixel_centers=True)
    np.testing.assert_allclose(got, expected, atol=1e-3)
