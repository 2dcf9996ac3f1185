"""Headless Chromium for the playground's tests: Debian's `chromium` package driven by Playwright's sync API.

Never `playwright install` (it downloads a browser): Playwright drives the system's `/usr/bin/chromium` through
`executable_path`. When Playwright or Chromium is missing the browser tests skip, except under CI (`CI` set), where
`.ci/run` installs both and a missing one is an error that says how to install it (as `oracle.py` does for the
parity oracle).

    with launch_chromium() as browser:
        page = browser.new_page(viewport=LAPTOP)
"""

from __future__ import annotations

import base64
import io
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator
from urllib.parse import urlsplit

import numpy as np
import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = Path("/usr/bin/chromium")
# no sandbox (tests may run as root in a container), no GPU, and nothing that phones home on its own
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
INSTALL = ("install Debian's browser with `.ci/install-chromium` (apt-get install -y chromium, as root) and "
           "Playwright's Python package with `pip install -e \".[dev]\"`; never run `playwright install` (it downloads a browser; the tests drive "
           f"{CHROMIUM})")


def _missing(what: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{what}, and CI runs the browser tests: {INSTALL}", pytrace=False)
    pytest.skip(f"{what}: {INSTALL}")


@contextmanager
def launch_chromium(config_folder: Path) -> Iterator["Browser"]:
    """A headless Chromium (the system's) under Playwright; skipped or failed (see module docstring) if missing.
    Chromium keeps its crash-report database under $XDG_CONFIG_HOME (default ~/.config/chromium): pointed at
    `config_folder` (a temp folder of the run), nothing lands in the user's home."""
    try:
        from playwright.sync_api import sync_playwright
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("playwright"):
            raise
        _missing("Playwright (the Python package) is not installed")
    if not CHROMIUM.is_file():
        _missing(f"Chromium is not installed at {CHROMIUM}")
    with sync_playwright() as playwright:
        env = {**os.environ, "XDG_CONFIG_HOME": str(config_folder)}
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True, env=env)
        try:
            yield browser
        finally:
            browser.close()


def expect(target):
    """Playwright's `expect` (imported when first called: only tests that launched a browser call it, so a missing
    Playwright skips or fails in `launch_chromium`, not at collection)."""
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


def foreign_requests(urls: list[str], base_url: str) -> list[str]:
    """The URLs among `urls` that leave the server's own origin (data: and blob: URLs stay in the page)."""
    own = urlsplit(base_url)
    return [url for url in urls if urlsplit(url).scheme not in ("data", "blob")
            and (urlsplit(url).scheme, urlsplit(url).netloc) != (own.scheme, own.netloc)]


def data_url_pixels(url: str) -> np.ndarray:
    """The pixels (uint8 HWC) of a `data:image/...;base64,...` URL."""
    header, _, payload = url.partition(",")
    assert header.startswith("data:image/") and header.endswith(";base64"), header[:60]
    return b64_pixels(payload)


def b64_pixels(b64: str) -> np.ndarray:
    """The pixels (uint8 HWC) of a base64 image file (what `b64_json` carries)."""
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"))


def sse_events(text: str) -> list[dict]:
    """The JSON of every `data:` line of a server-sent-event body (`[DONE]` left out)."""
    return [json.loads(line[5:]) for line in text.splitlines()
            if line.startswith("data:") and line[5:].strip() != "[DONE]"]


def save_screenshot(page: "Page", name: str, temp_folder: Path, full_page: bool = False) -> Path:
    """`page.screenshot` as `name` in the folder JANUS_RT_SCREENSHOTS names (the README's pictures: docs/), else in
    `temp_folder` (a test's tmp_path: a normal run writes nothing outside its temp folder); the file's path."""
    folder = Path(os.environ.get("JANUS_RT_SCREENSHOTS") or temp_folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    page.evaluate("document.activeElement && document.activeElement.blur()")  # no focus ring in the picture
    page.screenshot(path=str(path), full_page=full_page, animations="disabled")  # transitions at their end
    return path
