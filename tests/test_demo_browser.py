"""The demo in a real headless Chromium (Playwright driving ``/usr/bin/chromium``): upload a
photo, invert, move an edit slider, check that the image changed, save a screenshot."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = os.environ.get("IDINVERT_CHROMIUM", "/usr/bin/chromium")
SCREENSHOT_DIR = Path(__file__).resolve().parents[1] / "artifacts"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists(), reason="no chromium"
    ),
]
playwright_sync = pytest.importorskip("playwright.sync_api")

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def _start(model_dir: Path):
    from plugins_fixtures import launch_demo

    from idinvert.demo.service import DemoLimits

    return launch_demo(model_dir, DemoLimits(max_steps=20, default_steps=3))


def _image_src(page, selector: str) -> str | None:
    el = page.locator(f"{selector} img").first
    return el.get_attribute("src") if el.count() else None


def test_upload_invert_slide_and_screenshot(tmp_path, demo_model_dir):
    blocks, url = _start(demo_model_dir)
    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (64, 48, 3), dtype=np.uint8)).save(
        photo
    )
    try:
        with playwright_sync.sync_playwright() as p:
            browser = p.chromium.launch_persistent_context(
                str(tmp_path / "profile"),
                executable_path=CHROMIUM,
                headless=True,
                args=FLAGS,
                viewport={"width": 1400, "height": 1100},
            )
            page = browser.new_page()
            page.goto(url, wait_until="domcontentloaded")
            page.wait_for_selector("#invert-btn", timeout=60_000)
            page.locator("#upload input[type=file]").set_input_files(str(photo))
            page.wait_for_function(
                "() => document.querySelector('#upload img') !== null", timeout=30_000
            )
            page.click("#invert-btn")
            page.wait_for_function(
                "() => { const i = document.querySelector('#final img'); return i && i.src; }",
                timeout=60_000,
            )
            page.wait_for_function(
                "() => document.querySelector('#metrics').innerText.includes('MSE')", timeout=30_000
            )
            before = _image_src(page, "#edited")
            number = page.locator("#quick-smile input[type=number]")
            number.fill("2.5")
            number.press("Enter")
            page.wait_for_function(
                "(prev) => { const i = document.querySelector('#edited img');"
                " return i && i.src !== prev; }",
                arg=before,
                timeout=30_000,
            )
            after = _image_src(page, "#edited")
            assert after and after != before
            SCREENSHOT_DIR.mkdir(exist_ok=True)
            shot = SCREENSHOT_DIR / "demo_chromium.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            browser.close()
    finally:
        blocks.close()
