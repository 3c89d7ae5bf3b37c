"""The HTML report opened in headless Chromium: tables and every figure render.

Skipped with a reason when no Chromium is installed (Debian: ``apt-get
install -y chromium``). The screenshot is saved in the run directory.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
from test_report_support import CARDS, make_run

from bench.report import write_report
from bench.report.html import chromium_command, find_chromium, screenshot_html

BROWSER = find_chromium()
pytestmark = pytest.mark.skipif(BROWSER is None, reason="no Chromium installed "
                                "(apt-get install -y chromium)")

PROBE = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  document.body.setAttribute("data-probe", JSON.stringify({
    images: images.length,
    decoded: images.filter((i) => i.complete && i.naturalWidth > 0).length,
    widths: images.map((i) => i.naturalWidth),
    tables: document.querySelectorAll("table").length,
    rows: document.querySelectorAll("tbody tr").length,
  }));
});
</script>"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run_dir = make_run(tmp_path_factory.mktemp("html") / "run", models=("good", "poor"))
    write_report(run_dir, ("md", "html"), cards=CARDS)
    return run_dir


def _probe(page: Path) -> dict:
    """Load ``page`` plus a probe script in Chromium and read what the probe saw."""
    probe = page.with_name("probe.html")
    probe.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run(
            chromium_command(BROWSER, Path(profile), "--dump-dom", "--virtual-time-budget=10000",
                             probe.as_uri()),
            capture_output=True, text=True, timeout=120, check=False).stdout
    probe.unlink()
    found = re.search(r'data-probe="([^"]*)"', dom)
    assert found, "the probe script did not run"
    return json.loads(found.group(1).replace("&quot;", '"'))


def test_tables_and_every_figure_render(run):
    markdown = (run / "report.md").read_text()
    figures = re.findall(r"\]\((figures/[^)]+\.png)\)", markdown)
    seen = _probe(run / "report.html")
    assert seen["images"] == len(figures) == 3  # Figure 4 layout and two galleries
    assert seen["decoded"] == seen["images"]
    # Each image decodes at its file's pixel width.
    from skimage.io import imread

    assert seen["widths"] == [imread(run / f).shape[1] for f in figures]
    assert seen["tables"] == markdown.count("\n|---") == 6
    body_rows = sum(len(block.splitlines()) - 2 for block in re.findall(
        r"(?m)^\|.*\|\n\|---.*\n(?:\|.*\|\n?)*", markdown))
    assert seen["rows"] == body_rows


def test_screenshot_is_saved_and_not_blank(run):
    from skimage.io import imread

    shot = screenshot_html(run / "report.html", run / "report_screenshot.png")
    assert shot == (run / "report_screenshot.png").resolve()
    image = np.asarray(imread(shot))[..., :3].astype(float)
    assert image.shape[:2] == (2000, 1200)
    ink = (image.min(axis=-1) < 200).mean()  # share of non-white pixels
    assert 0.03 < ink < 0.9, ink
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 50  # text, tables and plot colours
