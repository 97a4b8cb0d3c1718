"""CSRNet on PyTorch: the same maps as the ONNX model it reads, on CPU here and (marker `gpu`)
on a CUDA GPU in half precision."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
import pytest
from onnx import helper

from crowdwatch.config.counting import DensityConfig
from crowdwatch.detectors.base import DetectorClosedError, DetectorUnavailableError
from crowdwatch.detectors.csrnet_onnx import (
    META_INPUT_SCALE,
    WeightsMismatchError,
    build_model,
    read_model,
)
from crowdwatch.detectors.density import CsrnetOnnxEstimator
from crowdwatch.runtime import models as runtime_models

torch = pytest.importorskip("torch", reason="PyTorch comes with the ultralytics extra")

from crowdwatch.detectors.csrnet_torch import CsrnetTorchEstimator  # noqa: E402
from csrnet_weights import random_weights  # noqa: E402

FloatArray = npt.NDArray[np.float32]


@pytest.fixture(scope="module")
def weights() -> dict[str, FloatArray]:
    return random_weights()


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory, weights: dict[str, FloatArray]) -> Path:
    path = tmp_path_factory.mktemp("csrnet") / "csrnet.onnx"
    onnx.save(build_model(weights, extra_props={META_INPUT_SCALE: "1.5"}), str(path))
    return path


def picture(h: int, w: int, seed: int = 1) -> npt.NDArray[np.uint8]:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_read_model_gives_back_the_weights_and_input_scale(
    model_path: Path, weights: dict[str, FloatArray]
) -> None:
    read, scale = read_model(model_path)
    assert scale == 1.5
    assert set(read) == set(weights)
    for key, array in weights.items():
        np.testing.assert_array_equal(read[key], array, err_msg=key)


def test_read_model_refuses_a_graph_that_is_not_csrnet(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "other",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
    )
    path = tmp_path / "other.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(WeightsMismatchError, match=r"missing=\['backend.0.bias'"):
        read_model(path)


@pytest.mark.parametrize(
    ("shape", "max_side"),
    [
        pytest.param((37, 45), None, id="odd-size-enlarged-1.5x"),
        pytest.param((120, 200), 100, id="shrunk-then-enlarged"),
    ],
)
def test_cpu_maps_equal_the_onnx_model(
    model_path: Path, shape: tuple[int, int], max_side: int | None
) -> None:
    reference = CsrnetOnnxEstimator(model_path, threads=1, max_side=max_side)
    on_torch = CsrnetTorchEstimator.from_onnx(model_path, device="cpu", max_side=max_side)
    image = picture(*shape)
    want, got = reference.estimate(image), on_torch.estimate(image)
    assert on_torch.input_scale == 1.5
    assert got.shape == want.shape
    assert got.scale == pytest.approx(want.scale)
    assert got.image_shape == want.image_shape == shape
    np.testing.assert_allclose(got.values, want.values, rtol=1e-3, atol=1e-4)
    assert abs(want.values).sum() > 1e-3  # the comparison is not between two empty maps


def test_a_batch_of_mixed_sizes_gives_each_picture_its_own_map(weights: dict[str, FloatArray]) -> None:
    est = CsrnetTorchEstimator(weights, device="cpu")
    images = [picture(40, 48, seed=1), picture(24, 32, seed=2), picture(40, 48, seed=3)]
    batch = est.estimate_batch(images)
    singles = [est.estimate(image) for image in images]
    assert [m.shape for m in batch] == [(5, 6), (3, 4), (5, 6)]
    for b, s in zip(batch, singles, strict=True):
        np.testing.assert_allclose(b.values, s.values, rtol=1e-4, atol=1e-5)
    assert not np.allclose(batch[0].values, batch[2].values)  # not one picture's map twice


def test_checks_input_weights_and_closing(weights: dict[str, FloatArray]) -> None:
    with pytest.raises(WeightsMismatchError, match="missing"):
        CsrnetTorchEstimator({k: v for k, v in weights.items() if k != "output_layer.bias"}, device="cpu")
    est = CsrnetTorchEstimator(weights, device="cpu")
    with pytest.raises(ValueError, match="smaller than one density cell"):
        est.estimate(np.zeros((4, 32, 3), np.uint8))
    est.close()
    with pytest.raises(DetectorClosedError):
        est.estimate(picture(16, 16))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_cuda_without_a_gpu_is_refused_with_the_reason(weights: dict[str, FloatArray]) -> None:
    with pytest.raises(DetectorUnavailableError, match="PyTorch sees no CUDA GPU"):
        CsrnetTorchEstimator(weights, device="cuda")


@pytest.mark.parametrize(
    ("requested", "gpu", "expected"),
    [("auto", True, "cuda:0"), ("auto", False, "cpu"), ("cpu", True, "cpu"), ("cuda:1", False, "cuda:1")],
)
def test_density_device_resolution(
    monkeypatch: pytest.MonkeyPatch, requested: str, gpu: bool, expected: str
) -> None:
    import crowdwatch.detectors.csrnet_torch as csrnet_torch

    monkeypatch.setattr(csrnet_torch, "cuda_available", lambda: gpu)
    assert runtime_models.density_device(requested) == expected


def test_the_runtime_runs_density_on_cpu_with_onnx_runtime(model_path: Path) -> None:
    on_cpu = runtime_models.open_density_model(model_path, "m", DensityConfig(device="cpu", threads=1))
    assert isinstance(on_cpu, CsrnetOnnxEstimator)
    assert (on_cpu.name, on_cpu.input_scale) == ("m", 1.5)


# ---- on a GPU ------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("half", [False, True], ids=["float32", "float16"])
def test_gpu_maps_match_the_onnx_model(model_path: Path, half: bool) -> None:
    reference = CsrnetOnnxEstimator(model_path)
    on_gpu = CsrnetTorchEstimator.from_onnx(model_path, device="cuda", half=half)
    image = picture(240, 320)
    want, got = reference.estimate(image), on_gpu.estimate(image)
    assert got.shape == want.shape
    # float16 keeps ~3 significant digits per layer, and so do float32 convolutions on recent
    # GPUs (PyTorch runs them as TF32 by default); the count (the sum) is what matters.
    assert got.values.sum() == pytest.approx(want.values.sum(), rel=2e-2 if half else 5e-3)
    peak = float(abs(want.values).max())
    np.testing.assert_allclose(got.values, want.values, rtol=0.1, atol=2e-2 * peak)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_a_gpu_machine_auto_runs_density_on_the_gpu_in_half_precision(model_path: Path) -> None:
    est = runtime_models.open_density_model(model_path, "m", DensityConfig(device="auto"))
    assert isinstance(est, CsrnetTorchEstimator)
    assert (est.device, est.half, est.input_scale) == ("cuda:0", True, 1.5)
    assert est.estimate(picture(64, 96)).shape == (12, 18)  # 1.5x: 96 x 144 pixels -> 12 x 18 cells
