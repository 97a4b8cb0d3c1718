"""Training CSRNet's head on cached trunk features: the split is exact (trunk ONNX + torch head =
the whole ONNX), training is deterministic for a seed, and it learns what it is shown. Random
weights of CSRNet's shapes: no model download, no research data."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import pytest

torch = pytest.importorskip("torch")  # the training extra (PyTorch) is installed with ultralytics

from crowdwatch.detectors.csrnet_onnx import (  # noqa: E402
    FEATURES_NAME,
    INPUT_NAME,
    META_INPUT_SCALE,
    OUTPUT_NAME,
    build_model,
    trunk_layers,
)
from crowdwatch.training.data import predicted_counts  # noqa: E402
from crowdwatch.training.head import (  # noqa: E402
    Sample,
    TrainSettings,
    _crop,
    head_specs,
    predict_maps,
    rescale_output,
    train_head,
)
from crowdwatch.training.targets import make_target  # noqa: E402
from csrnet_weights import random_weights  # noqa: E402

FloatArray = npt.NDArray[np.float32]


def run(model: onnx.ModelProto, output: str, image: FloatArray) -> FloatArray:
    opts = ort.SessionOptions()
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")  # torch runs next
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return np.asarray(sess.run([output], {INPUT_NAME: image})[0], dtype=np.float32)


def test_head_is_every_layer_after_the_split() -> None:
    assert [(s.key, s.in_channels, s.out_channels, s.dilation) for s in head_specs()] == [
        ("backend.8", 256, 128, 2),
        ("backend.10", 128, 64, 2),
        ("output_layer", 64, 1, 1),
    ]
    assert trunk_layers("backend.6")[-1].key == "backend.6"  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="no conv layer"):
        trunk_layers("backend.7")


def test_trunk_then_head_is_the_whole_network() -> None:
    weights = random_weights()
    image = np.random.default_rng(1).uniform(0, 255, (1, 3, 48, 64)).astype(np.float32)
    whole = run(build_model(weights), OUTPUT_NAME, image)
    trunk = run(build_model(weights, until="backend.6"), FEATURES_NAME, image)
    assert trunk.shape == (1, 256, 6, 8)
    (from_head,) = predict_maps(weights, [trunk[0].astype(np.float16)])
    # fp16 features (as cached) cost a little precision, nothing more
    np.testing.assert_allclose(from_head, whole[0, 0], rtol=2e-2, atol=2e-3 * float(np.abs(whole).max()))


def synthetic_samples(n: int, seed: int) -> list[Sample]:
    """Feature maps whose channel 0 marks where heads are, and targets built from those heads."""
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(n):
        heads = rng.uniform([0, 0], [96, 64], size=(int(rng.integers(2, 12)), 2))
        target = make_target(heads, (64, 96), sigma_cells=1.0)
        feats = rng.uniform(0, 0.2, (256, 8, 12)).astype(np.float32)
        feats[0] += 4.0 * target.density
        samples.append(Sample(feats.astype(np.float16), target.density, target.weights, float(target.count)))
    return samples


SETTINGS = TrainSettings(epochs=2, lr=1e-3, count_weight=1.0, crop=0.75, seed=7)


def test_training_is_deterministic_for_a_seed() -> None:
    samples, initial = synthetic_samples(4, seed=3), random_weights(5)
    first = train_head(samples, initial, SETTINGS)
    second = train_head(samples, initial, SETTINGS)
    assert set(first) == {f"{s.key}.{t}" for s in head_specs() for t in ("weight", "bias")}
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])
    other = train_head(samples, initial, dataclasses.replace(SETTINGS, seed=8))
    assert any(not np.array_equal(first[k], other[k]) for k in first)


def test_training_reduces_the_count_error() -> None:
    samples, initial = synthetic_samples(8, seed=11), random_weights(2)
    true = np.asarray([s.count for s in samples])
    before = predicted_counts(predict_maps(initial, [s.features for s in samples]), samples)
    trained = train_head(samples, initial, TrainSettings(epochs=15, lr=1e-3, crop=1.0, seed=0))
    after = predicted_counts(predict_maps(trained, [s.features for s in samples]), samples)
    assert np.abs(after - true).mean() < 0.5 * np.abs(before - true).mean()


def test_sample_shapes_must_agree() -> None:
    with pytest.raises(ValueError, match="do not match"):
        Sample(
            np.zeros((4, 2, 3), np.float16), np.zeros((2, 3), np.float32), np.ones((3, 2), np.float32), 0.0
        )


def test_the_estimator_enlarges_frames_by_the_models_input_scale(tmp_path: Path) -> None:
    from crowdwatch.detectors.density import CsrnetOnnxEstimator

    model = build_model(random_weights(), extra_props={META_INPUT_SCALE: "1.5"})
    path = tmp_path / "csrnet.onnx"
    path.write_bytes(model.SerializeToString())
    estimator = CsrnetOnnxEstimator(path, threads=1)
    assert estimator.input_scale == 1.5
    density = estimator.estimate(np.zeros((48, 64, 3), np.uint8))
    assert density.shape == (9, 12)  # the 72 x 96 enlarged frame, 8 pixels per cell
    assert density.image_shape == (48, 64)
    assert density.scale == pytest.approx((64 / 96 * 8, 48 / 72 * 8))  # cells in frame pixels


def test_a_crop_sees_the_context_it_has_in_the_whole_map() -> None:
    """The loss on a crop must use the values the whole map gives those cells (crop edges are
    not picture edges): a crop's loss equals the whole map's loss restricted to it."""
    from crowdwatch.training.head import CsrnetHead, sample_loss

    (sample,) = synthetic_samples(1, seed=4)
    head = CsrnetHead(head_specs())
    head.load_numpy(random_weights(3))
    rows, cols = slice(2, 6), slice(3, 9)
    with torch.no_grad():
        whole = head(torch.from_numpy(sample.features.astype(np.float32))[None])[0, 0].numpy()
        crop_loss = float(sample_loss(head, sample, rows, cols, count_weight=0.0))
    expected = float((((whole - sample.density) * sample.weights)[rows, cols] ** 2).sum())
    assert crop_loss == pytest.approx(expected, rel=1e-4)


def test_rescaling_folds_the_least_squares_count_factor_into_the_last_layer() -> None:
    samples = synthetic_samples(4, seed=3)
    head = random_weights(5)
    before = predicted_counts(predict_maps(head, [s.features for s in samples]), samples)
    rescaled, factor = rescale_output(head, samples)
    after = predicted_counts(predict_maps(rescaled, [s.features for s in samples]), samples)
    true = np.asarray([s.count for s in samples])
    assert factor == pytest.approx(float(before @ true) / float(before @ before), rel=1e-4)
    assert after == pytest.approx(before * factor, rel=1e-3)
    # Least squares through the origin: no other single factor fits the counts better.
    best = float(np.sum((after - true) ** 2))
    for other in (factor * 0.9, factor * 1.1):
        assert best <= float(np.sum((before * other - true) ** 2))


def test_crops_cover_the_border_cells_as_often_as_the_middle() -> None:
    sample = synthetic_samples(1, seed=0)[0]
    _, h, w = sample.features.shape
    seen = np.zeros((h, w))
    rng = np.random.default_rng(0)
    for _ in range(4000):
        rows, cols = _crop(sample, 0.5, rng)
        seen[rows, cols] += 1
    assert seen.min() > 0
    assert seen[0, 0] / seen[h // 2, w // 2] > 0.8


def test_a_recipe_trains_every_layer_after_its_split() -> None:
    from crowdwatch.detectors.trained import RECIPES
    from crowdwatch.training.head import fit_recipe

    recipe = dataclasses.replace(RECIPES["csrnet-mall"], split="backend.4", epochs=1, batch=1)
    rng = np.random.default_rng(4)
    samples = [
        dataclasses.replace(s, features=rng.uniform(0, 0.2, (512, 8, 12)).astype(np.float16))
        for s in synthetic_samples(2, seed=5)
    ]
    head, factor = fit_recipe(samples, random_weights(6), recipe)
    assert sorted({k.rsplit(".", 1)[0] for k in head}) == [
        "backend.10",
        "backend.6",
        "backend.8",
        "output_layer",
    ]
    assert factor > 0
    assert [s.key for s in head_specs("backend.4")] == [
        "backend.6",
        "backend.8",
        "backend.10",
        "output_layer",
    ]


def test_augmented_views_are_trained_on_but_the_rescale_fits_the_run_time_scale_alone() -> None:
    from crowdwatch.detectors.trained import RECIPES
    from crowdwatch.training.head import fit_recipe

    recipe = dataclasses.replace(RECIPES["csrnet-mall"], epochs=2, batch=1, augment_scales=(1.0,))
    samples, views = synthetic_samples(3, seed=5), synthetic_samples(3, seed=9)
    initial = random_weights(6)
    alone, _ = fit_recipe(samples, initial, recipe)
    head, factor = fit_recipe(samples, initial, recipe, augmented=views)
    assert any(not np.array_equal(alone[k], head[k]) for k in head)  # the views were trained on
    # The same training without the rescale, then the rescale fitted on `samples` only.
    unscaled, one = fit_recipe(samples, initial, dataclasses.replace(recipe, rescale=False), augmented=views)
    expected, expected_factor = rescale_output(unscaled, samples)
    assert one == 1.0
    assert factor == pytest.approx(expected_factor, rel=1e-6)
    for key in head:
        np.testing.assert_allclose(head[key], expected[key], rtol=1e-6)


def test_a_trunk_at_another_scale_shares_its_weights_cache_root_and_split(tmp_path: Path) -> None:
    from crowdwatch.training.features import TrunkFeatures

    npz = tmp_path / "weights.npz"
    np.savez(npz, x=np.zeros(1))
    trunk = TrunkFeatures(npz, tmp_path / "cache", split="backend.4", threads=1, scale=1.5)
    other = trunk.at_scale(0.75)
    assert (other.weights_npz, other.split, other.scale) == (npz, "backend.4", 0.75)
    assert other.cache_dir.parent == trunk.cache_dir.parent
    assert other.cache_dir.name == trunk.cache_dir.name.replace("-x1.5", "-x0.75")
