"""Fine-tuning the whole CSRNet (`training.full`): the torch network is the ONNX one, windows
cover the map and carry their context, mirroring is exact, and training learns. Tiny synthetic
pictures and random weights of CSRNet's shapes, on the CPU (the GPU test runs one epoch on CUDA)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import pytest

torch = pytest.importorskip("torch")  # the training extra (PyTorch) is installed with ultralytics

from crowdwatch.detectors.csrnet_onnx import INPUT_NAME, OUTPUT_NAME, build_model  # noqa: E402
from crowdwatch.training.data import predicted_counts as counts  # noqa: E402
from crowdwatch.training.full import (  # noqa: E402
    CsrnetNet,
    FullSettings,
    Picture,
    Window,
    _batch_loss,
    _OnDevice,
    choose_window,
    predict_maps_full,
    rescale_full,
    train_full,
)
from crowdwatch.training.targets import make_target  # noqa: E402
from csrnet_weights import random_weights  # noqa: E402

FloatArray = npt.NDArray[np.float32]


def picture(seed: int, heads: int, size: tuple[int, int] = (64, 96)) -> Picture:
    """Noise with `heads` bright blobs, and their density target."""
    rng = np.random.default_rng(seed)
    h, w = size
    rgb = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
    points = np.column_stack([rng.uniform(4, w - 4, heads), rng.uniform(4, h - 4, heads)])
    for x, y in points:
        rgb[max(int(y) - 2, 0) : int(y) + 3, max(int(x) - 2, 0) : int(x) + 3] = 230
    target = make_target(points, (h, w))
    return Picture(rgb, target.density, target.weights, float(target.count))


def test_the_torch_network_is_the_onnx_network() -> None:
    weights = random_weights(3)
    pic = picture(0, 5)
    sess = ort.InferenceSession(build_model(weights).SerializeToString(), providers=["CPUExecutionProvider"])
    blob = np.ascontiguousarray(pic.rgb.transpose(2, 0, 1)[None], dtype=np.float32)
    onnx_map = np.asarray(sess.run([OUTPUT_NAME], {INPUT_NAME: blob})[0])[0, 0]
    (torch_map,) = predict_maps_full(weights, [pic])
    assert torch_map.shape == (8, 12)
    np.testing.assert_allclose(torch_map, onnx_map, rtol=1e-4, atol=1e-5 * float(np.abs(onnx_map).max()))
    net = CsrnetNet()
    net.load_numpy(weights)
    assert all(np.array_equal(v, weights[k]) for k, v in net.to_numpy().items())


@pytest.mark.parametrize(
    ("cells", "crop", "context"),
    [((8, 12), 0.5, 2), ((8, 12), 0.5, 0), ((8, 12), 0.25, 8), ((5, 3), 0.7, 1), ((8, 12), 1.0, 4)],
)
def test_windows_lie_in_a_fixed_region_and_cover_every_cell(
    cells: tuple[int, int], crop: float, context: int
) -> None:
    rng = np.random.default_rng(0)
    h, w = cells
    seen = np.zeros(cells, dtype=int)
    sizes = set()
    for _ in range(400):
        win = choose_window(cells, crop, context, rng)
        r_top, r_left, r_h, r_w = win.region
        s_top, s_left, s_h, s_w = win.scored
        assert r_top >= 0
        assert r_top + r_h <= h
        assert r_left >= 0
        assert r_left + r_w <= w
        assert r_top <= s_top
        assert s_top + s_h <= r_top + r_h
        assert s_h >= 1
        assert r_left <= s_left
        assert s_left + s_w <= r_left + r_w
        assert s_w >= 1
        sizes.add((r_h, r_w))
        seen[s_top : s_top + s_h, s_left : s_left + s_w] += 1
    assert len(sizes) == 1  # one region size per map: a batch runs as one tensor
    assert seen.min() > 0  # the border cells are trained too
    if crop == 1.0:
        assert win == Window(region=(0, 0, h, w), scored=(0, 0, h, w))


def test_a_mirrored_window_scores_as_the_mirrored_picture_does() -> None:
    weights = random_weights(1)
    net = CsrnetNet()
    net.load_numpy(weights)
    pic = picture(2, 6)
    mirrored = Picture(
        np.ascontiguousarray(pic.rgb[:, ::-1]),
        np.ascontiguousarray(pic.density[:, ::-1]),
        np.ascontiguousarray(pic.weights[:, ::-1]),
        pic.count,
    )
    settings = FullSettings(block=2, count_weight=3.0)
    w_cells = pic.density.shape[1]
    # A window hanging at the right edge of a region at the right: flipped, it is at the left.
    win = Window(region=(1, 4, 6, 8), scored=(2, 9, 3, 3))
    twin = Window(region=(1, w_cells - 4 - 8, 6, 8), scored=(2, w_cells - 9 - 3, 3, 3))
    cpu = torch.device("cpu")
    with torch.no_grad():
        flipped = _batch_loss(net, [_OnDevice(pic, cpu)], [win], np.array([True]), settings, 4.0, False)
        plain = _batch_loss(net, [_OnDevice(mirrored, cpu)], [twin], np.array([False]), settings, 4.0, False)
    assert flipped.item() == pytest.approx(plain.item(), rel=1e-5)
    other = _batch_loss(net, [_OnDevice(pic, cpu)], [win], np.array([False]), settings, 4.0, False)
    assert other.item() != pytest.approx(plain.item(), rel=1e-3)  # the check can fail


def test_training_every_layer_learns_the_counts() -> None:
    torch.set_num_threads(2)
    weights = random_weights(0)
    train = [picture(10 + i, heads) for i, heads in enumerate((3, 9, 15, 6))]
    true = np.asarray([p.count for p in train])
    before = np.abs(counts(predict_maps_full(weights, train), train) - true).mean()
    settings = FullSettings(
        epochs=30, lr=3e-4, crop=1.0, batch=2, block=1, count_weight=1.0, flip=False, warmup=0
    )
    losses: list[float] = []
    trained = train_full(train, weights, settings, device="cpu", progress=lambda e, loss: losses.append(loss))
    after = np.abs(counts(predict_maps_full(trained, train), train) - true).mean()
    assert len(losses) == 30
    assert losses[-1] < losses[0]
    assert after < 0.25 * before, (before, after)
    assert set(trained) == set(weights)
    assert any(not np.array_equal(trained[k], weights[k]) for k in weights if k.startswith("frontend."))


def test_a_frozen_front_end_keeps_its_weights_and_the_seed_fixes_the_windows() -> None:
    weights = random_weights(0)
    train = [picture(20 + i, 4 + i) for i in range(3)]
    settings = FullSettings(epochs=2, lr=1e-4, frontend_lr=0.0, crop=0.5, context=1, batch=2)
    a = train_full(train, weights, settings, device="cpu")
    b = train_full(train, weights, settings, device="cpu")
    for key in weights:
        if key.startswith("frontend."):
            np.testing.assert_array_equal(a[key], weights[key])
        np.testing.assert_array_equal(a[key], b[key])  # CPU kernels are deterministic
    assert not np.array_equal(a["output_layer.weight"], weights["output_layer.weight"])


def test_rescale_folds_the_least_squares_factor_into_the_output_layer() -> None:
    weights = random_weights(4)
    weights["output_layer.weight"] = np.abs(weights["output_layer.weight"])  # positive counts
    pics = [picture(30 + i, 5 + 3 * i) for i in range(3)]
    predicted = counts(predict_maps_full(weights, pics), pics)
    true = np.asarray([p.count for p in pics])
    scaled, factor = rescale_full(weights, pics)
    assert factor == pytest.approx(float(predicted @ true / (predicted @ predicted)), rel=1e-6)
    np.testing.assert_allclose(counts(predict_maps_full(scaled, pics), pics), predicted * factor, rtol=1e-4)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"epochs": 0}, "epochs, batch and block"),
        ({"crop": 0.0}, "crop must be in"),
        ({"crop": 1.5}, "crop must be in"),
        ({"lr": 0.0}, "lr must be positive"),
        ({"frontend_lr": -1.0}, "frontend_lr not negative"),
        ({"context": -1}, "context and warmup at least 0"),
        ({"warmup": -1}, "context and warmup at least 0"),
    ],
)
def test_bad_settings_are_refused(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(FullSettings(), **change)


def test_a_picture_whose_target_does_not_fit_it_is_refused() -> None:
    pic = picture(0, 2)
    with pytest.raises(ValueError, match="has a 12x8 map"):
        Picture(pic.rgb, pic.density[:-1], pic.weights[:-1], pic.count)
    with pytest.raises(ValueError, match=r"must be \(H, W, 3\)"):
        Picture(pic.rgb[:, :, 0], pic.density, pic.weights, pic.count)
    with pytest.raises(ValueError, match="no training pictures"):
        train_full([], random_weights(0), FullSettings(), device="cpu")


@pytest.mark.gpu
def test_one_epoch_on_cuda_runs_under_bf16_and_returns_finite_weights() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    weights = random_weights(0)
    train = [picture(40 + i, 5) for i in range(4)]
    trained = train_full(train, weights, FullSettings(epochs=1, batch=4), device="cuda")
    assert all(np.isfinite(v).all() for v in trained.values())
    maps = predict_maps_full(trained, train, device="cuda")
    np.testing.assert_allclose(maps[0], predict_maps_full(trained, train[:1])[0], rtol=1e-2, atol=1e-3)


def test_the_learning_rate_rises_over_the_warmup_then_decays_to_zero() -> None:
    from crowdwatch.training.full import lr_factor

    f = lr_factor(100, 10)
    cosine = [0.5 * (1 + np.cos(np.pi * s / 100)) for s in (0, 4, 9)]
    assert [f(s) for s in (0, 4, 9)] == pytest.approx([0.1 * cosine[0], 0.5 * cosine[1], cosine[2]])
    assert f(50) == pytest.approx(0.5)
    assert f(100) == pytest.approx(0.0)
    assert all(f(s) >= f(s + 1) for s in range(9, 100))
    assert lr_factor(10, 0)(0) == 1.0
