"""The web playground (`GET /`) in a real browser: headless Chromium (Debian's package) under Playwright, against
the real server on 127.0.0.1 serving the tiny 6 x 6-grid checkpoint (36 decode steps an image, 12 x 12 px).

Each test loads the page, works it the way a person does (typing, Enter, a file chooser, the API-key dialog) and
checks what the page shows against what the HTTP API answers for the same request. Every page a test opens must
make no request outside the server's own origin (data: and blob: URLs stay in the page) and raise no script error.
With JANUS_RT_SCREENSHOTS=<folder> the generation tests also write the README's pictures there (playground.png,
playground-phone.png); otherwise nothing is written outside the test's temp folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import httpx
import numpy as np
import pytest
from PIL import Image

import janus_rt

from browser_utils import (LAPTOP, PHONE, b64_pixels, data_url_pixels, expect, foreign_requests, launch_chromium,
                           save_screenshot, sse_events)
from janus_rt.engine.params import IMAGE_DEFAULTS
from janus_rt.serve.playground import playground_page
from janus_rt.serve.settings import ServeSettings
from serve_utils import base, start_server  # noqa: F401 (a fixture)

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.browser

API_KEY = "open-sesame"
# Waits go through locators (Playwright's injected script): a `wait_for_function` predicate is evaluated as a
# string, which the page's Content-Security-Policy (no 'unsafe-eval') refuses once it has to poll
WAIT_MS = 30_000
IMAGES = "/v1/images/generations"
CHAT = "/v1/chat/completions"


@dataclass
class OpenedPage:
    """One page and what it did: every URL it requested and every uncaught script error."""

    page: "Page"
    base_url: str
    urls: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    with launch_chromium(tmp_path_factory.mktemp("chromium-config")) as chromium:
        yield chromium


@pytest.fixture(scope="module")
def server(base) -> Iterator[str]:  # noqa: F811 (the fixture imported above)
    with start_server(base, ServeSettings(host="127.0.0.1", port=0)) as url:
        yield url


@pytest.fixture
def open_page(browser):
    """open_page(base_url, viewport=LAPTOP) -> the playground loaded in a fresh browser context; after the test,
    every page opened must have stayed on its server's origin and raised no script error."""
    opened: list[tuple[object, OpenedPage]] = []

    def load(base_url: str, viewport: dict = LAPTOP) -> OpenedPage:
        context = browser.new_context(viewport=viewport)
        page = context.new_page()
        record = OpenedPage(page, base_url)
        page.on("request", lambda request: record.urls.append(request.url))
        page.on("pageerror", lambda error: record.errors.append(str(error)))
        page.set_default_timeout(WAIT_MS)
        opened.append((context, record))
        page.goto(f"{base_url}/")
        return record

    yield load
    problems = []
    for context, record in opened:
        context.close()
        foreign = foreign_requests(record.urls, record.base_url)
        if foreign:
            problems.append(f"requests outside {record.base_url}: {foreign}")
        if record.errors:
            problems.append(f"script errors: {record.errors}")
    assert not problems, problems


def generate(page: "Page", prompt: str, n: int, seed: int | str, previews: int = 2, negative: str = "") -> tuple[dict, list]:
    """Fill the image form, press Enter in the prompt, wait until every image is final; the request's JSON body and
    the events of the stream that answered it."""
    page.fill("#prompt", prompt)
    page.fill("#negative-prompt", negative)
    page.fill("#n", str(n))
    page.fill("#seed", str(seed))
    page.select_option("#partial-images", str(previews))
    with page.expect_response(lambda r: r.url.endswith(IMAGES)) as answer:
        page.press("#prompt", "Enter")
    expect(page.locator("#gallery img[data-final=true]")).to_have_count(n, timeout=WAIT_MS)
    expect(page.locator("#generate")).to_be_enabled(timeout=WAIT_MS)
    assert answer.value.status == 200
    return answer.value.request.post_data_json, sse_events(answer.value.text())


def no_horizontal_overflow(page: "Page") -> None:
    width, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width <= inner, f"the page scrolls sideways: {width} px of content in a {inner} px window"


def test_the_page_is_self_contained() -> None:
    """No URL with a scheme or a protocol-relative one: nothing to fetch from elsewhere, offline included."""
    page = playground_page()
    for needle in ("http://", "https://", "src=\"//", "href=\"//", "url(", "@import"):
        assert needle not in page, needle
    assert "Content-Security-Policy" in page and "connect-src 'self'" in page


def test_generate_with_previews_shows_each_preview_then_the_image(open_page, server, tmp_path: Path) -> None:
    opened = open_page(server)
    page = opened.page
    assert page.evaluate("document.activeElement.id") == "prompt"  # the prompt box comes first, ready to type in
    assert float(page.input_value("#cfg-weight")) == IMAGE_DEFAULTS.cfg_weight
    assert float(page.input_value("#temperature")) == IMAGE_DEFAULTS.temperature
    unlabelled = "[...document.querySelectorAll('input, select, textarea')].filter(e => !e.labels.length).map(e => e.id)"
    assert page.evaluate(unlabelled) == []
    sent, events = generate(page, "a red fox in fresh snow", n=3, seed=7, previews=2, negative="blurry")
    assert sent["stream"] is True and sent["partial_images"] == 2 and sent["progress_events"] is True
    assert sent["negative_prompt"] == "blurry" and sent["seed"] == 7

    partials = [e for e in events if e["type"] == "image_generation.partial_image"]
    assert partials, "the server sent no preview (the tiny model should have time for at least one)"
    for image in range(3):  # every preview sent was shown as an <img>, in order, in its image's card
        previews = [e for e in partials if e["image_index"] == image]
        shown = page.locator(f"[data-testid^=preview-{image}-]")
        assert shown.count() == len(previews)
        for k, event in enumerate(previews):
            assert shown.nth(k).get_attribute("src").endswith(event["b64_json"])
            assert int(shown.nth(k).get_attribute("data-rows-done")) == event["rows_done"] < 6
    progress = [e for e in events if e["type"] == "janus_rt.progress"]
    assert {e["rows"] for e in progress} == {6} and page.get_attribute("[data-testid=progress-0]", "aria-valuenow") == "6"

    expected = httpx.post(f"{server}{IMAGES}", json={"prompt": "a red fox in fresh snow", "n": 3, "seed": 7,
                                                     "negative_prompt": "blurry"}, timeout=60).json()["data"]
    for image in range(3):  # the final <img> is the image the API returns for the same seed without streaming
        src = page.get_attribute(f"[data-testid=image-{image}]", "src")
        assert np.array_equal(data_url_pixels(src), b64_pixels(expected[image]["b64_json"]))
        link = page.locator(f"[data-testid=download-{image}]")
        assert link.get_attribute("href") == src and link.get_attribute("download").endswith(".png")
        assert link.is_visible()
    expect(page.locator("#queue")).to_contain_text("janus", timeout=WAIT_MS)  # GET /health, polled
    no_horizontal_overflow(page)
    assert save_screenshot(page, "random-playground.png", tmp_path).stat().st_size > 0
    assert not foreign_requests(opened.urls, server) and any(u.endswith("/health") for u in opened.urls)


def test_chat_with_an_uploaded_image_streams_the_answer(open_page, server, tmp_path: Path) -> None:
    picture = tmp_path / "gradient.png"
    ramp = np.linspace(0, 255, 32, dtype=np.uint8)
    Image.fromarray(np.stack([np.tile(ramp, (32, 1)), np.tile(ramp[:, None], (1, 32)),
                              np.full((32, 32), 90, np.uint8)], axis=-1)).save(picture)
    page = open_page(server).page
    page.click("[data-testid=tab-chat]")
    page.set_input_files("#chat-image", str(picture))
    page.wait_for_selector("#attached:not([hidden])")
    page.fill("#max-tokens", "12")
    page.fill("#question", "What is in this picture?")
    with page.expect_response(lambda r: r.url.endswith(CHAT)) as answer:
        page.press("#question", "Enter")
    page.wait_for_selector("[data-testid=assistant-message][data-done=true]")

    sent = answer.value.request.post_data_json
    (turn,) = sent["messages"]
    text_part, image_part = turn["content"]
    assert text_part == {"type": "text", "text": "What is in this picture?"}
    assert image_part["image_url"]["url"].startswith("data:image/png;base64,")
    assert np.array_equal(data_url_pixels(image_part["image_url"]["url"]), np.asarray(Image.open(picture)))
    pieces = [c["choices"][0]["delta"].get("content", "") for c in sse_events(answer.value.text()) if c["choices"]]
    assert sum(1 for p in pieces if p) >= 2, pieces  # the answer came in several pieces
    shown = page.locator("[data-testid=assistant-message] .text").text_content()
    assert shown == "".join(pieces)
    # greedy by default: the same conversation answered without streaming is the same text
    whole = httpx.post(f"{server}{CHAT}", json={"messages": sent["messages"], "max_tokens": 12}, timeout=60).json()
    assert shown == whole["choices"][0]["message"]["content"]
    assert page.locator("[data-testid=user-message] img").count() == 1 and page.input_value("#question") == ""


def test_the_servers_refusals_are_shown(open_page, server, tmp_path: Path) -> None:
    opened = open_page(server)
    page = opened.page
    page.fill("#prompt", "a fox")
    page.press("#prompt", "Shift+Enter")  # a new line, not a request
    page.keyboard.type("in the snow")
    assert page.input_value("#prompt") == "a fox\nin the snow"
    assert not any(url.endswith(IMAGES) for url in opened.urls)

    too_big = str(2**64)
    refusal = httpx.post(f"{server}{IMAGES}", content=f'{{"prompt": "a fox", "seed": {too_big}}}',
                         headers={"Content-Type": "application/json"}, timeout=60)
    assert refusal.status_code == 400
    page.fill("#seed", too_big)
    page.click("[data-testid=generate]")
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert refusal.json()["error"]["message"] in alert.text_content()
    assert page.locator("#gallery img").count() == 0

    page.click("[data-testid=tab-chat]")  # and a chat refusal (a file that is no image), in the chat tab's alert
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"this is not a PNG file")
    page.set_input_files("#chat-image", str(broken))
    page.wait_for_selector("#attached:not([hidden])")
    page.fill("#question", "hello")
    with page.expect_response(lambda r: r.url.endswith(CHAT)) as answer:
        page.press("#question", "Enter")
    page.wait_for_selector("[data-testid=chat-error]:not(:empty)")
    assert answer.value.status == 400
    refusal = httpx.post(f"{server}{CHAT}", json=answer.value.request.post_data_json, timeout=60)
    assert refusal.status_code == 400
    shown = page.get_by_role("alert").text_content()
    assert refusal.json()["error"]["message"] in shown  # the server's own words, the same in every answer
    assert page.locator("[data-testid=user-message]").count() == 0  # the refused turn is not kept
    assert page.input_value("#question") == "hello"  # nor is the question lost


def test_the_api_key_is_asked_for_on_401_and_the_request_sent_again(open_page, base) -> None:  # noqa: F811
    with start_server(base, ServeSettings(host="127.0.0.1", port=0, api_key=API_KEY)) as keyed:
        page = open_page(keyed).page
        page.fill("#prompt", "a fox")
        page.fill("#seed", "3")
        page.select_option("#partial-images", "0")
        page.press("#prompt", "Enter")
        dialog = page.locator("[data-testid=key-dialog]")
        dialog.wait_for()
        assert page.get_attribute("#api-key", "type") == "password"
        page.fill("#api-key", "wrong")
        page.press("#api-key", "Enter")
        expect(page.locator("#key-reason")).to_contain_text("refused", timeout=WAIT_MS)
        page.fill("#api-key", API_KEY)
        with page.expect_request(lambda r: r.url.endswith(IMAGES)) as resent:
            page.click("[data-testid=key-save]")
        assert resent.value.headers["authorization"] == f"Bearer {API_KEY}"
        page.wait_for_selector("[data-testid=image-0][data-final=true]")
        assert page.evaluate("sessionStorage.getItem('janus-rt-api-key')") == API_KEY
        page.reload()  # the key stays for the tab's session: no second question
        page.fill("#prompt", "a fox")
        page.press("#prompt", "Enter")
        page.wait_for_selector("[data-testid=image-0][data-final=true]")
        assert not dialog.is_visible()


def test_phone_width_window(open_page, server, tmp_path: Path) -> None:
    page = open_page(server, PHONE).page
    no_horizontal_overflow(page)
    _, events = generate(page, "a lighthouse at dusk, oil painting", n=2, seed=11, previews=1)
    assert sum(e["type"] == "image_generation.completed" for e in events) == 2
    no_horizontal_overflow(page)
    assert save_screenshot(page, "random-playground-phone.png", tmp_path, full_page=True).stat().st_size > 0
    page.click("[data-testid=tab-chat]")
    page.fill("#max-tokens", "40")
    page.fill("#question", "Describe a lighthouse in one long sentence, please.")
    page.press("#question", "Enter")
    page.wait_for_selector("[data-testid=assistant-message][data-done=true]")
    no_horizontal_overflow(page)


@pytest.fixture(scope="module")
def toy_server() -> Iterator[str]:
    toy = janus_rt.load("toy", device="cpu", dtype="float32")
    try:
        with start_server(toy, ServeSettings(host="127.0.0.1", port=0)) as url:
            yield url
    finally:
        toy.close()


@pytest.mark.parametrize("viewport, name", [(LAPTOP, "playground.png"), (PHONE, "playground-phone.png")])
def test_the_toy_draws_what_it_is_asked_in_the_playground(open_page, toy_server, tmp_path: Path, viewport: dict,
                                                          name: str) -> None:
    """The README's pictures: the shipped toy draws its prompt in the page (each final <img> is >= 95 % the scene's
    cells), then answers a question about an image uploaded in the chat tab."""
    from janus_rt.toy.evaluate import CFG_WEIGHT, cell_accuracy
    from janus_rt.toy.scenes import scene_of_caption

    opened = open_page(toy_server, viewport)
    page = opened.page
    caption = "a large red circle on a blue background"
    page.fill("#cfg-weight", str(CFG_WEIGHT))
    generate(page, caption, n=2, seed=0, previews=2)
    for image in range(2):
        src = page.get_attribute(f"[data-testid=image-{image}]", "src")
        assert cell_accuracy(data_url_pixels(src), scene_of_caption(caption)) >= 0.95
    no_horizontal_overflow(page)
    assert save_screenshot(page, name, tmp_path, full_page=viewport is PHONE).stat().st_size > 0
