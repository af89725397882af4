"""The demo in a real headless Chromium (Playwright driving ``/usr/bin/chromium``): a first
visit (the model line, a quick edit before any inversion answered with a message and no HTTP
error, results shown at a readable size, the loss curve's numeric axes and legend), a slider
edit that changes the image, the model selector; screenshots go to ``artifacts/``."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

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


@contextlib.contextmanager
def _page(model_dir: Path | None, tmp_path: Path) -> Iterator[tuple[Any, list]]:
    """A demo server on ``model_dir`` (``None``: ``IDINVERT_MODELS``) and a Chromium page on it,
    loaded → ``(page, server errors)``: every HTTP answer of 500 or more the page receives."""
    from plugins_fixtures import launch_demo

    from idinvert.demo.service import DemoLimits

    blocks, url = launch_demo(model_dir, DemoLimits(max_steps=20, default_steps=3))
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
            errors: list[tuple[int, str]] = []
            page.on(
                "response",
                lambda r: errors.append((r.status, r.url)) if r.status >= 500 else None,
            )
            page.goto(url, wait_until="domcontentloaded")
            page.wait_for_selector("#invert-btn", timeout=60_000)
            yield page, errors
            browser.close()
    finally:
        blocks.close()


def _invert(page, photo: Path, until: str = "MSE") -> None:
    page.locator("#upload input[type=file]").set_input_files(str(photo))
    page.wait_for_function("() => document.querySelector('#upload img') !== null", timeout=30_000)
    page.click("#invert-btn")
    page.wait_for_function(
        "(text) => document.querySelector('#metrics').innerText.includes(text)",
        arg=until,
        timeout=60_000,
    )


def _set_slider(page, elem_id: str, value: float) -> None:
    number = page.locator(f"#{elem_id} input[type=number]")
    number.fill(str(value))
    number.press("Enter")


def _shown(page, selector: str) -> tuple[int, float]:
    """(natural width of the image file, width it is displayed at), once it has loaded."""
    page.wait_for_function(
        "(sel) => { const i = document.querySelector(sel + ' img');"
        " return i && i.complete && i.naturalWidth > 0; }",
        arg=selector,
        timeout=30_000,
    )
    return page.evaluate(
        "(sel) => { const i = document.querySelector(sel + ' img');"
        " return [i.naturalWidth, i.getBoundingClientRect().width]; }",
        selector,
    )


def _image_src(page, selector: str) -> str | None:
    el = page.locator(f"{selector} img").first
    return el.get_attribute("src") if el.count() else None


def _photo(tmp_path: Path, seed: int) -> Path:
    from plugins_fixtures import random_photos

    return random_photos(tmp_path, {"photo": (64, 48)}, seed)["photo"]


def test_upload_invert_slide_and_screenshot(tmp_path, demo_model_dir):
    with _page(demo_model_dir, tmp_path) as (page, errors):
        _invert(page, _photo(tmp_path, 3))
        before = _image_src(page, "#edited")
        _set_slider(page, "quick-smile", 2.5)
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
        assert errors == []


def test_first_visit_explains_itself(tmp_path, demo_model_dir):
    """What a stranger sees: the model line; a quick edit before any inversion says what to
    do (no HTTP error); the results shown at a readable size; a loss curve with numeric axes
    and a legend; the final losses in the metrics line."""
    with _page(demo_model_dir, tmp_path) as (page, errors):
        info = page.locator("#model-info").inner_text()
        assert "Model:" in info and "32×32 pixels" in info and "Try" in info
        SCREENSHOT_DIR.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOT_DIR / "demo_first_visit.png"), full_page=True)

        note = page.locator("#quick-note")
        assert "Nothing to edit yet" in note.inner_text()
        _set_slider(page, "quick-smile", 1.5)
        page.wait_for_function(
            "() => document.querySelector('#quick-note').innerText.includes('⚠️')",
            timeout=30_000,
        )
        assert "invert a photo or draw a random sample first" in note.inner_text()

        _invert(page, _photo(tmp_path, 4), until="Final losses")
        for selector in ("#input", "#encoder", "#final"):
            natural, shown = _shown(page, selector)
            assert natural == 32 and shown >= 200, (selector, natural, shown)
        texts = page.evaluate(
            "() => Array.from(document.querySelectorAll('#loss-curve svg text'))"
            ".map(t => t.textContent)"
        )
        assert "step" in texts and "loss" in texts
        assert {"total", "pixel", "domain × 2"} <= set(texts)  # the legend
        numbers = [t for t in texts if t.replace(".", "", 1).replace(",", "").isdigit()]
        assert "0" in numbers or "0.0" in numbers
        assert len(numbers) >= 4  # numeric tick labels on both axes
        page.wait_for_function(
            "() => document.querySelector('#quick-note').innerText.includes('Move a slider')",
            timeout=30_000,
        )
        page.screenshot(path=str(SCREENSHOT_DIR / "demo_after_invert.png"), full_page=True)
        assert errors == []


def test_model_selector_switches_models(tmp_path, demo_model_dir, monkeypatch):
    from plugins_fixtures import save_second_model

    other = save_second_model(tmp_path)
    monkeypatch.setenv("IDINVERT_MODELS", f"small={demo_model_dir},other={other}")
    with _page(None, tmp_path) as (page, errors):
        assert "small" in page.locator("#model-info").inner_text()
        page.locator("#model-select input").click()
        page.get_by_role("option", name="other").click()
        page.wait_for_function(
            "() => document.querySelector('#model-info').innerText.includes('16×16')",
            timeout=60_000,
        )
        assert page.locator("#quick-smile").is_hidden()
        page.click("#sample-btn")
        page.wait_for_function(
            "() => document.querySelector('#metrics').innerText.includes('other')",
            timeout=60_000,
        )
        natural, shown = _shown(page, "#final")
        assert natural == 16 and shown >= 200
        page.screenshot(path=str(SCREENSHOT_DIR / "demo_model_selector.png"), full_page=True)
        assert errors == []
