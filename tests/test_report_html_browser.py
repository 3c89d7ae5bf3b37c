"""The HTML report opened in headless Chromium: tables and every figure render.

Skipped with a reason when no Chromium is installed (Debian: ``apt-get
install -y chromium``). The screenshot is saved in the run directory.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
from test_report_support import make_run

from bench.report import write_report

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")


def find_chromium() -> str | None:
    """Path of a Chromium-family browser on PATH (or ``/usr/bin/chromium``), else None."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None


def chromium_command(browser: str, profile: Path, *extra: str) -> list[str]:
    """A headless, network-quiet Chromium command line with its own throw-away profile."""
    return [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--hide-scrollbars", f"--user-data-dir={profile}", *extra]


def screenshot_html(page: Path, png: Path, *, browser: str, width: int = 1200,
                    height: int = 2000, timeout: float = 120.0) -> Path:
    """Render ``page`` in headless Chromium and save a ``width`` x ``height`` PNG at ``png``."""
    png = Path(png).resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-chromium-") as profile:
        command = chromium_command(browser, Path(profile), f"--screenshot={png}",
                                   f"--window-size={width},{height}",
                                   Path(page).resolve().as_uri())
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                check=False)
    assert result.returncode == 0 and png.is_file(), \
        f"{browser} did not write {png} (exit {result.returncode}): {result.stderr[-2000:]}"
    return png


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
    scrolling: Array.from(document.querySelectorAll("table")).filter(
      (t) => getComputedStyle(t.parentElement).overflowX === "auto").length,
    wider: Array.from(document.querySelectorAll("table")).filter(
      (t) => t.offsetWidth > t.parentElement.clientWidth).length,
    collapsed: document.querySelectorAll("details:not([open]) table").length,
    page: document.documentElement.scrollWidth,
    view: document.documentElement.clientWidth,
  }));
});
</script>"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run_dir = make_run(tmp_path_factory.mktemp("html") / "run", models=("good", "poor"))
    write_report(run_dir, ("md", "html"))
    return run_dir


def _probe(page: Path) -> dict:
    """Load ``page`` plus a probe script in Chromium and read what the probe saw."""
    probe = page.with_name("probe.html")
    probe.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run(
            # A narrow window: the wide tables must scroll inside the page, not widen it.
            chromium_command(BROWSER, Path(profile), "--dump-dom", "--virtual-time-budget=10000",
                             "--window-size=640,900", probe.as_uri()),
            capture_output=True, text=True, timeout=120, check=False).stdout
    probe.unlink()
    found = re.search(r'data-probe="([^"]*)"', dom)
    assert found, "the probe script did not run"
    return json.loads(found.group(1).replace("&quot;", '"'))


def test_tables_and_every_figure_render(run):
    markdown = (run / "report.md").read_text()
    figures = re.findall(r"\]\((figures/[^)]+\.png)\)", markdown)
    seen = _probe(run / "report.html")
    # Figure 4 layout with its IoU and HD95 companions, a per-case figure per dataset, two
    # galleries.
    assert seen["images"] == len(figures) == 7
    assert seen["decoded"] == seen["images"]
    # Each image decodes at its file's pixel width.
    from skimage.io import imread

    assert seen["widths"] == [imread(run / f).shape[1] for f in figures]
    # Templates, Results, Table 1 and 2 layouts, two per-dataset tables, paired comparisons;
    # and, in the HTML only, a collapsed per-case table per dataset (Markdown links the CSV).
    assert markdown.count("\n|---") == 7 and seen["tables"] == 7 + 2
    assert seen["collapsed"] == 2
    body_rows = sum(len(block.splitlines()) - 2 for block in re.findall(
        r"(?m)^\|.*\|\n\|---.*\n(?:\|.*\|\n?)*", markdown))
    per_case_rows = len((run / "per_case.csv").read_text().splitlines()) - 1
    assert seen["rows"] == body_rows + per_case_rows
    # Every table scrolls inside its container; some are wider than the window, yet the
    # page itself is not.
    assert seen["scrolling"] == seen["tables"]
    assert seen["wider"] >= 1 and seen["page"] <= seen["view"]


def test_screenshot_is_saved_and_not_blank(run):
    from skimage.io import imread

    shot = screenshot_html(run / "report.html", run / "report_screenshot.png", browser=BROWSER)
    assert shot == (run / "report_screenshot.png").resolve()
    image = np.asarray(imread(shot))[..., :3].astype(float)
    assert image.shape[:2] == (2000, 1200)
    ink = (image.min(axis=-1) < 200).mean()  # share of non-white pixels
    assert 0.03 < ink < 0.9, ink
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 50  # text, tables and plot colours
