"""MedSAM-2 under its shipped settings: mask prompts and the official-code click order.

Issue 20, "Fidelity":

- **Mask prompts under the default memory.** The official 2D code never takes a mask
  prompt (``func_2d/function.py`` calls the prompt encoder with ``masks=None``), so
  under ``memory = "official"`` an image flow with a mask prompt runs under
  ``mask_memory`` (default ``"confidence"``), and every unit records the memory that
  produced it (``notes``: unit JSON, ``units.csv``, the report's Models section).
- **official-code click order.** The official 2D loop feeds the click it draws with
  ``np.argwhere`` on the mask resized to ``S x S``, i.e. (row, col) in model pixels, to
  a prompt encoder that reads (x, y). The ``official-code`` suite sets
  ``click_order = "official"`` for ``medsam2``; every other suite keeps (x, y).

Models: SAM 2.0 tiny with random weights at 256 px on CPU (as in
``tests/test_official_loop.py``).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sam2")

from bench.adapters.medsam2.adapter import MedSAM2Adapter  # noqa: E402
from bench.adapters.medsam2.memory_bank import ConfidenceBank  # noqa: E402

from bench.cli import main  # noqa: E402
from bench.config import load_config  # noqa: E402
from bench.errors import ConfigError  # noqa: E402
from bench.plan import make_plan  # noqa: E402
from bench.report.build import unit_notes  # noqa: E402
from bench.rundir import format_notes  # noqa: E402
from bench.types import FlowFrames, Prompt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SIZE = 256
FALLBACK = "confidence (mask prompt; the official 2D loop takes none: mask_memory)"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def adapter(**extra) -> MedSAM2Adapter:
    """The shipped defaults (memory "official"), small and on CPU."""
    settings = {"random_weights": True, "image_size": SIZE, "device": "cpu",
                "cache_mb": 0, **extra}
    return MedSAM2Adapter(settings=settings)


def image_flow(n: int = 4, shape: tuple[int, int] = (48, 80)) -> FlowFrames:
    """Non-square RGB images with a bright block drifting one row per image."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 60, (n, *shape, 3), dtype=np.uint8)
    for i in range(n):
        frames[i, 10 + i:30 + i, 20:50] += 150
    return FlowFrames("flow", "synthetic", "image-flow", list(frames))


def block(shape=(48, 80), shift=1) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[10 + shift:30 + shift, 20:50] = True
    return mask


MASK = Prompt("t", 1, "mask", mask=block())
CLICK = Prompt("t", 1, "point", points=((35, 20),), labels=(1,))


def same(a, b) -> bool:
    return (set(a.masks) == set(b.masks) and a.scores == b.scores
            and all(np.array_equal(x, y) for t in a.masks
                    for x, y in zip(a.masks[t], b.masks[t], strict=True))
            and all(np.array_equal(x, y) for t in a.logits
                    for x, y in zip(a.logits[t], b.logits[t], strict=True)))


# -- mask prompts under memory = "official" ----------------------------------------------


def test_a_mask_prompt_under_the_default_memory_runs_the_confidence_bank():
    """Same masks, scores and logits as memory = "confidence" set by hand; not fifo's."""
    default = adapter()
    assert default.options.memory == "official"
    run = default.predict(image_flow(), [MASK])
    assert default.last_policy == "confidence"
    assert isinstance(default.last_bank, ConfidenceBank)
    assert same(run, adapter(memory="confidence").predict(image_flow(), [MASK]))
    # The choice matters on this flow: SAM 2's FIFO memory gives other logits.
    fifo = adapter(memory="fifo").predict(image_flow(), [MASK])
    assert any(not np.array_equal(x, y) for x, y in zip(run.logits["t"], fifo.logits["t"],
                                                        strict=True))
    # Every image scored at its own shape; the prompted one is SAM 2's echo of the mask.
    assert [m.shape for m in run.masks["t"]] == [(48, 80)] * 4
    assert run.scores["t"][1] is None


def test_mask_memory_fifo_equals_memory_fifo_and_refuse_is_one_line():
    assert same(adapter(mask_memory="fifo").predict(image_flow(), [MASK]),
                adapter(memory="fifo").predict(image_flow(), [MASK]))
    with pytest.raises(ConfigError, match=r"^\[models\.medsam2\]\.mask_memory: 'refuse' with "
                                          r"memory 'official'.*target 't', frame 1"):
        adapter(mask_memory="refuse").predict(image_flow(), [MASK])


def test_unit_notes_name_the_memory_of_each_flow():
    volume = FlowFrames("vol", "synthetic", "volume",
                        np.zeros((3, 48, 80), dtype=np.uint8))
    empty = Prompt("t", 2, "empty-mask", mask=np.zeros((48, 80), bool))
    default = adapter()
    assert default.unit_notes(volume, [MASK]) == {"memory": "fifo"}
    assert default.unit_notes(image_flow(), [CLICK]) == {"memory": "official-2d"}
    assert default.unit_notes(image_flow(), [CLICK, MASK]) == {"memory": FALLBACK}
    assert default.unit_notes(image_flow(), [CLICK, empty]) == {"memory": FALLBACK}
    assert adapter(mask_memory="fifo").unit_notes(image_flow(), [MASK]) == {
        "memory": "fifo (mask prompt; the official 2D loop takes none: mask_memory)"}
    assert adapter(mask_memory="refuse").unit_notes(image_flow(), [MASK]) == {
        "memory": "official-2d"}
    assert adapter(memory="confidence").unit_notes(image_flow(), [MASK]) == {
        "memory": "confidence"}
    assert "image flows with a mask prompt: confidence" in default.memory_policy()


def test_the_report_lists_each_models_memory_per_dataset():
    units = pd.DataFrame({
        "model": ["medsam2", "medsam2", "medsam2", "full-frame"],
        "dataset": ["b", "a", "a", "a"],
        "notes": ["memory=official-2d", f"memory={FALLBACK}", f"memory={FALLBACK}", np.nan]})
    assert unit_notes(units) == {"medsam2": (
        f" Per unit (`notes` in `units.csv`): a: memory={FALLBACK} (2 units); "
        "b: memory=official-2d (1 unit).")}
    assert unit_notes(units.drop(columns="notes")) == {} == unit_notes(None)
    assert format_notes({"z": "1", "memory": "fifo"}) == "memory=fifo; z=1"


@pytest.mark.slow
def test_universal_2d_runs_medsam2_with_its_shipped_settings(tmp_path, capsys):
    """Table 2's suite on the demo data: 0 failed units, each says its memory."""
    text = (ROOT / "bench.toml").read_text()
    block_start = text.index("[models.medsam2]\n")
    head, rest = text[:block_start], text[block_start:]
    # Only the input size (speed) and the embedding cache differ from the shipped settings.
    rest = rest.replace("image_size = 1024", f"image_size = {SIZE}", 1)
    config = tmp_path / "bench.toml"
    config.write_text(head + rest)
    shutil.copytree(ROOT / "datasets", tmp_path / "datasets")
    out = tmp_path / "run"
    code = main(["--config", str(config), "run", "--suite", "universal-2d", "--models",
                 "medsam2", "--random-weights", "--limit", "2", "--device", "cpu",
                 "--no-cache", "--out", str(out)])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    units = pd.read_csv(out / "units.csv")
    assert len(units) == 3 and set(units["status"]) == {"ok"}
    assert set(units["notes"]) == {f"memory={FALLBACK}"}
    report = (out / "report.md").read_text()
    models = report[report.index("## Models"):]
    assert f"demo-fundus: memory={FALLBACK} (1 unit)" in models


# -- official-code: the official click order -------------------------------------------


def suite_settings(suite: str) -> dict:
    """``medsam2``'s settings in ``suite`` of the project's bench.toml, small and on CPU."""
    plan = make_plan(load_config(ROOT / "bench.toml"), suite, models=["medsam2"],
                     random_weights=True)
    return {**plan.model_settings["medsam2"], "image_size": SIZE, "device": "cpu",
            "cache_mb": 0}


def clicks_seen(settings: dict, flow: FlowFrames, prompt: Prompt) -> list[list[float]]:
    """The click coordinates each prompt-encoder call received, in model pixels."""
    model = MedSAM2Adapter(settings=settings)
    encoder = model.load().predictor.sam_prompt_encoder
    seen = []

    def spy(points=None, boxes=None, masks=None, **kw):
        if points is not None:
            seen.append(points[0][0].tolist())
        return original(points=points, boxes=boxes, masks=masks, **kw)

    original = encoder.forward
    with mock.patch.object(encoder, "forward", spy):
        model.predict(flow, [prompt])
    return [row for call in seen for row in call]


def test_official_code_suite_feeds_clicks_as_the_official_code_does():
    """H x W = 40 x 100, click at column 70, row 10, S = 256.

    The official code resizes the mask to S x S and clicks at np.argwhere's
    (row, col) there: (10 * 256 / 40, 70 * 256 / 100) = (64, 179.2), read by the prompt
    encoder as (x, y). Under (x, y) order the encoder gets (179.2, 64) instead.
    """
    flow = image_flow(n=2, shape=(40, 100))
    click = Prompt("t", 0, "point", points=((70, 10),), labels=(1,))
    official = suite_settings("official-code")
    assert official["click_order"] == "official"
    assert clicks_seen(official, flow, click) == [pytest.approx([64.0, 179.2])]
    harness = suite_settings("universal-2d")
    assert harness.get("click_order", "xy") == "xy"
    assert clicks_seen(harness, flow, click) == [pytest.approx([179.2, 64.0])]


# -- [suites.NAME.model_settings] ------------------------------------------------------


SUITE = ('[suites.x]\nprotocol = "one-prompt"\ndatasets = ["demo-fundus"]\n'
         'models = ["medsam2"]\n')


def plan_of(tmp_path: Path, text: str):
    path = tmp_path / "bench.toml"
    path.write_text(text)
    return make_plan(load_config(path), "x", random_weights=True)


def test_suite_model_settings_apply_to_that_suite_only(tmp_path):
    text = ('[models.medsam2]\nbatch = 2\ncache_dir = "emb"\n' + SUITE
            + '[suites.x.model_settings.medsam2]\nclick_order = "official"\n'
            'cache_dir = "suite-emb"\n[suites.y]\nprotocol = "one-prompt"\n'
            'datasets = ["demo-fundus"]\nmodels = ["medsam2"]\n')
    chosen = plan_of(tmp_path, text).model_settings["medsam2"]
    assert (chosen["batch"], chosen["click_order"]) == (2, "official")
    assert chosen["cache_dir"] == str((tmp_path / "suite-emb").resolve())
    other = make_plan(load_config(tmp_path / "bench.toml"), "y", random_weights=True)
    assert "click_order" not in other.model_settings["medsam2"]


def test_bad_suite_model_settings_are_one_line_naming_the_suite_table(tmp_path):
    with pytest.raises(ConfigError, match=r"\[suites\.x\.model_settings\]: unknown model "
                                          r"'medsam3'"):
        plan_of(tmp_path, SUITE + '[suites.x.model_settings.medsam3]\nbatch = 2\n')
    with pytest.raises(ConfigError, match=r"\[suites\.x\.model_settings\.medsam2\] over "
                                          r"\[models\.medsam2\]\.click_order"):
        plan_of(tmp_path, SUITE + '[suites.x.model_settings.medsam2]\nclick_order = "yx"\n')
