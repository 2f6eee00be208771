"""The viewer in a real browser: headless Chromium (the system's, driven by Playwright) against a live
`cxrsr serve` on 127.0.0.1: upload a real chest X-ray, see a 4x result, move the slider, toggle the
difference map, zoom, change the window, and download the 16-bit PNG. Screenshots are saved with the test's
files (and to $CXRSR_SCREENSHOTS when set, which is how docs/images/viewer.png is made)."""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_serve import live_server

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        message = "Chromium is not installed (scripts/install-system-deps.sh installs it)"
        if os.environ.get("CXRSR_REQUIRE_SHARED") == "1":
            pytest.fail(message)
        pytest.skip(message)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


def test_viewer_upscales_compares_and_downloads(browser, nih_png, tmp_path):
    with Image.open(nih_png) as im:
        Image.fromarray(np.asarray(im.convert("L").resize((128, 128), Image.BICUBIC))).save(tmp_path / "chest.png")
    shots = [tmp_path]
    if os.environ.get("CXRSR_SCREENSHOTS"):
        shots.append(Path(os.environ["CXRSR_SCREENSHOTS"]))
    proc, url = live_server()
    try:
        context = browser.new_context(accept_downloads=True, viewport={"width": 1200, "height": 900})
        page = context.new_page()
        errors = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(url + "/")
        assert "not for diagnosis" in page.inner_text("#derived-label")
        page.wait_for_function("document.querySelectorAll('#model option').length >= 1")
        assert page.input_value("#model") == "cxr-fidelity"

        page.set_input_files("#file", str(tmp_path / "chest.png"))  # choosing a file starts the upload
        page.wait_for_function("document.querySelector('#status').textContent.startsWith('done')", timeout=120_000)
        assert page.is_visible("#viewer")
        canvas = page.locator("#compare-view")
        assert (canvas.get_attribute("data-width"), canvas.get_attribute("data-height")) == ("512", "512")
        assert page.locator("#input-view").get_attribute("data-width") == "128"
        assert "128x128" in page.inner_text("#info") and "512x512" in page.inner_text("#info")
        for folder in shots:
            page.screenshot(path=str(folder / "viewer.png"), full_page=True)

        # before/after slider: the split line follows
        before = int(canvas.get_attribute("data-split"))
        page.locator("#split").fill("200")
        assert int(canvas.get_attribute("data-split")) < before

        # difference map toggle: the right side now shows cxrsr - bicubic, with other pixels
        pixels_sr = page.evaluate("Array.from(document.querySelector('#compare-view').getContext('2d')"
                                  ".getImageData(400, 250, 4, 1).data)")
        page.check("#diff")
        assert canvas.get_attribute("data-right") == "difference"
        pixels_diff = page.evaluate("Array.from(document.querySelector('#compare-view').getContext('2d')"
                                    ".getImageData(400, 250, 4, 1).data)")
        assert pixels_diff != pixels_sr
        for folder in shots:
            page.screenshot(path=str(folder / "viewer-difference.png"), full_page=True)
        page.uncheck("#diff")

        # zoom with the wheel; both views redraw at the new zoom
        zoom = float(canvas.get_attribute("data-zoom"))
        canvas.hover()
        page.mouse.wheel(0, -300)
        page.wait_for_function(f"parseFloat(document.querySelector('#compare-view').dataset.zoom) > {zoom}")

        # window/level for 16-bit display
        page.locator("#width").fill("2000")
        assert page.input_value("#width") == "2000"

        # download the 16-bit PNG
        with page.expect_download(timeout=120_000) as download:
            page.click("#dl-png")
        saved = tmp_path / "download.png"
        download.value.save_as(saved)
        assert download.value.suggested_filename == "chest_x4.png"
        with Image.open(saved) as im:
            assert im.size == (512, 512) and "cxr-fidelity" in str(im.info)
        assert page.is_disabled("#dl-dcm")  # a PNG input has no derived DICOM
        assert errors == []
        context.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
