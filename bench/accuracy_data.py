"""Models, samples and metrics shared by every tool in bench/accuracy.py.

Two models, each with disjoint calibration and evaluation samples:

- MobileNetV2 (torchvision ImageNet weights, ``tests/tooling/torch_nets.py``),
  exported to ONNX opset 17 with the TorchScript exporter; samples are random
  crops of the bundled photos (``tools/datasets.imagenet_batch``), calibration
  and evaluation from different seeds. Metric: top-1 agreement with the float
  model.
- PP-OCRv4 rec (the rapidocr-onnxruntime package's file, as shipped), input
  ``1x3x48x320``; samples are text lines rendered with Pillow from two disjoint
  word lists. Metrics: character accuracy ``1 - edit distance / len`` and
  exact-line accuracy against the rendered string.

``ort_ready_copy`` writes the hand fix the onnxruntime quantizer needs on
PP-OCRv4 rec (Constant weights moved to initializers, opset 12 -> 13).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper, version_converter

from tests.tooling import images
from tools.datasets import imagenet_batch
from tools.real_models import PPOCR_REC, ctc_greedy_decode, ppocr_rec_charset

Feeds = dict[str, np.ndarray]


def _words(text: str) -> list[str]:
    return text.split()


# Word lists for the OCR lines: calibration and evaluation share no word.
_CALIB_WORDS = _words(
    "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike "
    "november oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee "
    "zulu river mountain forest window garden silver orange purple yellow market "
    "station bridge castle engine rocket planet winter summer autumn spring basket "
    "candle pencil rubber ticket wallet jacket pocket button mirror carpet"
)
_EVAL_WORDS = _words(
    "apple banana cherry dragon eagle falcon guitar harbor island jungle kettle lemon "
    "meadow needle ocean parrot quartz rabbit saddle tiger umbrella valley walnut "
    "yogurt zebra anchor barrel cactus desert empire fabric glacier helmet igloo "
    "jigsaw kernel ladder magnet noodle orbit pepper quiver ribbon shadow tunnel "
    "velvet wizard copper marble thunder compass lantern harvest"
)


@dataclass(frozen=True)
class Task:
    """One model with its samples and its metric.

    ``calib`` and ``evaluate`` hold one feed dict per sample (batch of one).
    ``score(outputs)`` maps the first output of every evaluation sample (in
    order) to named metric values; ``reference`` is what the float model gave.
    """

    name: str
    model_path: Path
    input_name: str
    calib: list[Feeds]
    evaluate: list[Feeds]
    score: Callable[[list[np.ndarray]], dict[str, float]]


def _export_mobilenet_v2(path: Path) -> None:
    import torch

    from tests.tooling.torch_nets import mobilenet_v2

    net = mobilenet_v2()
    x = torch.zeros(1, 3, 224, 224)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net, (x,), str(path), dynamo=False, opset_version=17, input_names=["input"]
        )


def _feeds(name: str, batch: np.ndarray) -> list[Feeds]:
    return [{name: np.ascontiguousarray(x[None])} for x in batch]


def mobilenet_task(
    workdir: Path, *, calib: int, evaluate: int, calib_seed: int = 101, eval_seed: int = 202
) -> tuple[Task, Callable[[int], list[Feeds]]]:
    """The MobileNetV2 task, and a maker of further calibration sets (by seed).

    The float reference is onnxruntime on the exported model; ``score`` gives
    ``top1_agreement`` (fraction of evaluation crops whose argmax equals the
    float model's).
    """
    path = workdir / "mobilenet_v2.onnx"
    if not path.exists():
        _export_mobilenet_v2(path)
    eval_feeds = _feeds("input", imagenet_batch(evaluate, seed=eval_seed))
    reference = [o.argmax() for o in run_onnxruntime(path, eval_feeds)]

    def score(outputs: list[np.ndarray]) -> dict[str, float]:
        agree = [int(o.argmax() == r) for o, r in zip(outputs, reference, strict=True)]
        return {"top1_agreement": float(np.mean(agree))}

    task = Task(
        "MobileNetV2",
        path,
        "input",
        _feeds("input", imagenet_batch(calib, seed=calib_seed)),
        eval_feeds,
        score,
    )
    return task, lambda seed: _feeds("input", imagenet_batch(calib, seed=seed))


def _lines(words: list[str], count: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        n = int(rng.integers(1, 4))
        text = " ".join(words[int(i)] for i in rng.integers(0, len(words), n))
        if rng.random() < 0.4:
            text += f" {int(rng.integers(0, 10000))}"
        if rng.random() < 0.3:
            text = text.capitalize()
        out.append(text)
    return out


def _ocr_feeds(lines: list[str], input_name: str, seed: int) -> list[Feeds]:
    rng = np.random.default_rng(seed)
    feeds = []
    for text in lines:
        img = images.render_text(text, font_size=int(rng.integers(24, 40)))
        feeds.append({input_name: images.ppocr_line_input(img)})
    return feeds


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insert, delete, substitute cost 1)."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def ocr_task(*, calib: int, evaluate: int) -> Task:
    """The PP-OCRv4 rec task on the model file as shipped.

    ``score`` gives ``char_accuracy`` (mean of ``max(0, 1 - edit / len)``) and
    ``line_accuracy`` (fraction of lines read exactly), against the strings
    that were rendered.
    """
    path = PPOCR_REC.path()
    name = PPOCR_REC.input_name
    charset = ppocr_rec_charset(path)
    eval_lines = _lines(_EVAL_WORDS, evaluate, seed=303)

    def score(outputs: list[np.ndarray]) -> dict[str, float]:
        chars, exact = [], []
        for probs, want in zip(outputs, eval_lines, strict=True):
            got = ctc_greedy_decode(probs[0], charset).strip()
            chars.append(max(0.0, 1.0 - edit_distance(got, want) / len(want)))
            exact.append(int(got == want))
        return {"char_accuracy": float(np.mean(chars)), "line_accuracy": float(np.mean(exact))}

    return Task(
        "PP-OCRv4 rec",
        path,
        name,
        _ocr_feeds(_lines(_CALIB_WORDS, calib, seed=404), name, seed=505),
        _ocr_feeds(eval_lines, name, seed=606),
        score,
    )


def run_onnxruntime(path: Path, feeds: list[Feeds]) -> list[np.ndarray]:
    """First output of ``path`` on every feed, onnxruntime CPU, 2 threads."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return [sess.run(None, f)[0] for f in feeds]


def ort_ready_copy(src: Path, dst: Path) -> list[str]:
    """Write ``src`` with Constant tensors as initializers and opset >= 13; return what changed.

    onnxruntime's quantizer sees Constant-node weights as activations (so
    per-channel does nothing) and only loads per-channel QDQ at opset >= 13.
    """
    model = onnx.load(str(src))
    changes = []
    keep, moved = [], 0
    for node in model.graph.node:
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].t.dims:
            tensor = numpy_helper.to_array(node.attribute[0].t)
            model.graph.initializer.append(numpy_helper.from_array(tensor, node.output[0]))
            moved += 1
        else:
            keep.append(node)
    del model.graph.node[:]
    model.graph.node.extend(keep)
    if moved:
        changes.append(f"{moved} Constant nodes moved to initializers")
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if opset < 13:
        model = version_converter.convert_version(model, 13)
        changes.append(f"opset {opset} -> 13")
    onnx.save(model, str(dst))
    return changes
