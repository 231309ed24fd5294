"""The playground page in headless Chromium (Debian's, driven by Playwright) against a real
server: a grid of generated images (streamed), a label change, a latent walk, a loop and its
animations, an upscale and its download, output sizes, the detail blend, tile progress, metadata,
an oversize upload's error, the live view, keyboard use, an accessibility audit (axe-core), an API
key, a phone-sized screen.

Every state is saved as a screenshot under test-artifacts/playground/ (or $GAN_TEST_ARTIFACTS).
Without chromium the tests are skipped with the reason in the summary (`make browser` installs
it); with CI=true they must run, so they fail instead."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from axe_playwright_python.sync_playwright import Axe
from PIL import Image
from playwright.sync_api import Browser, Page, Request, sync_playwright

from tests.live_server import REPO, Server, model_subset, start_server

MAX_PIXELS = 256 * 256  # the test server's upscale limit: room for 4 tiles, yet an oversize image is small
CHROMIUM_ARGS = [
    "--no-sandbox",  # tests run as root here
    "--disable-gpu",
    # This machine's network is closed: no background connections, no update checks.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]
ARTIFACTS = Path(os.environ.get("GAN_TEST_ARTIFACTS", REPO / "test-artifacts")) / "playground"


def chromium_path() -> str:
    found = os.environ.get("GAN_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    reason = "chromium is not installed (make browser installs Debian's)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"the browser tests must run in CI, but cannot: {reason}")
    pytest.skip(reason=f"BROWSER TESTS NOT RUN: {reason}")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = chromium_path()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("playground")
    upscalers = ["srresnet-x2", "srresnet-x4", "srgan-x4"]  # the x4 two: the family photo-x4
    models = model_subset(tmp, ["digits", "digits-conditional", "digits-style", *upscalers])
    srv = start_server(tmp, models, max_input_pixels=MAX_PIXELS)
    yield srv
    srv.stop()


@pytest.fixture
def page(browser: Browser, live: Server) -> Iterator[Page]:
    """A fresh tab (its own storage) that fails the test on any script error."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.set_default_timeout(20_000)
    yield tab
    context.close()
    assert not errors, f"script errors on the page: {errors}"


def shot(tab: Page, name: str) -> None:
    tab.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def open_model(tab: Page, live: Server, model: str) -> None:
    tab.goto(f"{live.url}/#model={model}")
    panel = "#upscaler" if model.startswith("sr") else "#generator"
    tab.wait_for_selector(f"{panel}:not([hidden])")


def image_digests(tab: Page, selector: str) -> list[str]:
    """A digest of each shown image's pixels, as the browser decoded them (one channel: the
    generators here are grayscale). The page's policy lets it fetch nothing but this server, so
    the pixels are read through a canvas rather than by fetching the images' blob: URLs."""
    channels: list[str] = tab.evaluate(
        """(selector) => [...document.querySelectorAll(selector)].map((img) => {
            const canvas = new OffscreenCanvas(img.naturalWidth, img.naturalHeight);
            const context = canvas.getContext("2d");
            context.drawImage(img, 0, 0);
            const rgba = context.getImageData(0, 0, canvas.width, canvas.height).data;
            return String.fromCharCode(...rgba.filter((_, i) => i % 4 === 0));
        })""",
        selector,
    )
    return [sha(channel.encode("latin-1")) for channel in channels]


def pixel_digest(png: bytes) -> str:
    with Image.open(io.BytesIO(png)) as image:
        return sha(image.convert("L").tobytes())


def wait_for_text(tab: Page, selector: str, text: str) -> None:
    """Wait until the element's text contains `text`."""
    tab.wait_for_function(
        "([selector, text]) => document.querySelector(selector).textContent.includes(text)",
        arg=[selector, text],
    )


def record_texts(tab: Page, selector: str) -> None:
    """Start keeping every text the element is given (window.seenTexts), however fast the page
    changes it: a MutationObserver's records hold each replaced text node."""
    tab.evaluate(
        """(selector) => {
            window.seenTexts = [];
            new MutationObserver((records) => {
                for (const record of records) {
                    for (const node of record.addedNodes) window.seenTexts.push(node.textContent);
                }
            }).observe(document.querySelector(selector), { childList: true });
        }""",
        selector,
    )


def accept_headers(tab: Page, path: str) -> list[str]:
    """The Accept header of each request the page makes to `path` from now on."""
    seen: list[str] = []

    def note(request: Request) -> None:
        if urlsplit(request.url).path == path:
            seen.append(request.headers.get("accept", ""))

    tab.on("request", note)
    return seen


def how_made(tab: Page) -> dict[str, str]:
    """The upscaler's "how it was made" list: term -> value."""
    terms = tab.locator("#up-how dt").all_inner_texts()
    return dict(zip(terms, tab.locator("#up-how dd").all_inner_texts(), strict=True))


def upscale_page(tab: Page, picture: Path) -> None:
    """Choose the file, press Upscale, wait for the answer to be shown."""
    tab.set_input_files("#up-file", str(picture))
    wait_for_text(tab, "#up-chosen", picture.name)
    tab.click("#up-submit")  # the button is busy from the click until the answer is shown
    tab.wait_for_function("() => document.querySelector('#up-submit').getAttribute('aria-busy') === null")
    assert tab.locator("#up-error").is_hidden(), tab.inner_text("#up-error")
    assert tab.locator("#up-result").is_visible()


def api_upscale(live: Server, picture: Path, query: str) -> httpx.Response:
    answer = httpx.post(
        f"{live.url}/upscale?{query}",
        content=picture.read_bytes(),
        headers={"Content-Type": "image/jpeg" if picture.suffix == ".jpg" else "image/png"},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    return answer


def set_range(tab: Page, selector: str, value: str) -> None:
    tab.fill(selector, value)
    tab.dispatch_event(selector, "input")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def api_images(live: Server, path: str, body: dict[str, object]) -> list[bytes]:
    answer = httpx.post(f"{live.url}{path}", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    return [base64.b64decode(image["data"]) for image in answer.json()["images"]]


def photo(width: int, height: int) -> bytes:
    """A real photograph (scikit-image's bundled cat), resized: a PNG's bytes."""
    from skimage import data

    buffer = io.BytesIO()
    Image.fromarray(data.chelsea()).resize((width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


def generate_grid(tab: Page, n: int, seed: str, label: str | None) -> list[str]:
    """Fill in the form, press Generate, wait for the new grid; its images' digests. label: a
    class index, "" for "by seed", None for a model without classes."""
    tab.fill("#gen-n", str(n))
    tab.fill("#gen-seed", seed)
    if label is not None:
        tab.select_option("#gen-label", label)
    before = tab.inner_text("#gen-summary")
    tab.click("#gen-submit")
    tab.wait_for_function(
        "([before, n]) => document.querySelector('#gen-summary').textContent !== before"
        " && document.querySelectorAll('#gen-grid img').length === n",
        arg=[before, n],
    )
    return image_digests(tab, "#gen-grid img")


def test_generate_a_grid_then_another_label(page: Page, live: Server) -> None:
    open_model(page, live, "digits-conditional")
    threes = generate_grid(page, 6, "100", "3")
    shot(page, "01-generate-grid")
    expected = api_images(
        live, "/generate", {"model": "digits-conditional", "n": 6, "seed": 100, "labels": 3}
    )
    assert threes == [pixel_digest(image) for image in expected], "the page shows what the API answers"
    captions = page.locator("#gen-grid .caption").all_inner_texts()
    assert captions == [f"seed {100 + i} · 3" for i in range(6)]

    sevens = generate_grid(page, 6, "100", "7")
    shot(page, "02-generate-label-7")
    assert len(set(sevens)) == 6 and not set(sevens) & set(threes), "another label, other images"

    # Clicking an image downloads it, named after its model, seed and label.
    with page.expect_download() as download:
        page.click("#gen-grid li:nth-child(2) a")
    saved = Path(download.value.path())
    assert download.value.suggested_filename == "digits-conditional-v1-seed101-label7.png"
    assert pixel_digest(saved.read_bytes()) == sevens[1]
    again = api_images(live, "/generate", {"model": "digits-conditional", "seed": 101, "labels": 7})
    assert saved.read_bytes() == again[0], "the download is the API's file, byte for byte"


def test_seeds_beyond_javascript_numbers_and_the_random_button(page: Page, live: Server) -> None:
    open_model(page, live, "digits")
    big = str(2**63 - 3)  # above 2^53: a JavaScript number would round it
    generate_grid(page, 3, big, None)
    captions = page.locator("#gen-grid .caption").all_inner_texts()
    assert captions == [f"seed {2**63 - 3 + i}" for i in range(3)]
    expected = api_images(live, "/generate", {"model": "digits", "seed": 2**63 - 1})
    assert image_digests(page, "#gen-grid li:nth-child(3) img") == [pixel_digest(expected[0])]

    page.fill("#gen-seed", str(2**63))
    page.click("#gen-submit")
    page.wait_for_selector("#gen-error:not([hidden])")
    assert "at most 9223372036854775807" in page.inner_text("#gen-error")

    page.click("#gen-random")
    page.wait_for_function(f"() => document.querySelector('#gen-seed').value !== '{2**63}'")
    page.wait_for_selector("#gen-error", state="hidden")
    seed = int(page.input_value("#gen-seed"))
    page.wait_for_function(
        f"() => document.querySelector('#gen-grid .caption').textContent === 'seed {seed}'"
    )


def test_generate_streams_into_the_grid(page: Page, live: Server) -> None:
    """/generate is asked for NDJSON; the grid gets each image as its line is read (one at a time,
    not the whole grid at once) and ends as the JSON answer's images, with a progress bar on the
    way."""
    open_model(page, live, "digits")
    accepts = accept_headers(page, "/generate")
    page.evaluate(
        """() => {
            window.gridCounts = [];
            const grid = document.querySelector('#gen-grid');
            new MutationObserver((records) => {
                let count = grid.querySelectorAll('img').length;
                const counts = [];
                for (const record of [...records].reverse()) {  // the count after each change
                    counts.unshift(count);
                    count -= record.addedNodes.length - record.removedNodes.length;
                }
                window.gridCounts.push(...counts);
            }).observe(grid, { childList: true });
        }"""
    )
    record_texts(page, "#gen-progress-text")
    shown = generate_grid(page, 40, "500", None)  # parts of 32: two batches
    assert accepts == ["application/x-ndjson"]
    counts = page.evaluate("window.gridCounts")
    assert counts[-40:] == list(range(1, 41)), "one image at a time"
    texts = page.evaluate("window.seenTexts")
    assert texts[0] == "0 of 40 images" and texts[-1] == "40 of 40 images"
    assert page.locator("#gen-progress-row").is_hidden(), "the bar goes once all are shown"
    assert page.inner_text("#gen-summary").startswith("40 images (32×32) from digits v1")
    expected = api_images(live, "/generate", {"model": "digits", "n": 40, "seed": 500})
    assert shown == [pixel_digest(image) for image in expected]
    captions = page.locator("#gen-grid .caption").all_inner_texts()
    assert captions[0] == "seed 500" and captions[-1] == "seed 539"


def test_latent_walk_strip(page: Page, live: Server) -> None:
    open_model(page, live, "digits-conditional")
    generate_grid(page, 4, "20", "5")  # the walk's seeds follow the grid: 20 to 21
    assert page.input_value("#walk-from") == "20" and page.input_value("#walk-to") == "21"
    page.fill("#walk-to", "29")
    page.fill("#walk-steps", "7")
    page.click("#walk-submit")
    page.wait_for_function("() => document.querySelectorAll('#walk-strip img').length === 7")
    shot(page, "03-latent-walk")
    captions = page.locator("#walk-strip .caption").all_inner_texts()
    assert captions[0] == "seed 20" and captions[-1] == "seed 29" and captions[3] == "t = 0.50"
    expected = api_images(
        live, "/walk", {"model": "digits-conditional", "from_seed": 20, "to_seed": 29, "steps": 7, "label": 5}
    )
    assert image_digests(page, "#walk-strip img") == [pixel_digest(image) for image in expected]
    grid = image_digests(page, "#gen-grid img")
    assert (
        expected[0] != expected[-1] and pixel_digest(expected[0]) == grid[0]
    )  # the walk starts at the grid's first


def test_a_loop_through_seeds_as_a_strip(page: Page, live: Server) -> None:
    open_model(page, live, "digits-conditional")
    generate_grid(page, 3, "30", "4")  # the loop's seeds follow the grid: 30, 31, 32
    page.select_option("#walk-kind", "loop")
    assert page.is_visible("#walk-seeds") and not page.is_visible("#walk-from")
    assert page.input_value("#walk-seeds") == "30, 31, 32"
    page.fill("#walk-seeds", "1, 2,3")
    page.fill("#walk-steps", "4")
    page.click("#walk-submit")
    page.wait_for_function("() => document.querySelectorAll('#walk-strip img').length === 12")
    captions = page.locator("#walk-strip .caption").all_inner_texts()
    assert [captions[i] for i in (0, 4, 8)] == ["seed 1", "seed 2", "seed 3"] and captions[2] == "t = 0.50"
    assert "through seeds 1 → 2 → 3 → 1, label 4" in page.inner_text("#walk-summary")
    body = {"model": "digits-conditional", "seeds": [1, 2, 3], "steps": 4, "label": 4}
    expected = api_images(live, "/walk", body)
    assert image_digests(page, "#walk-strip img") == [pixel_digest(image) for image in expected]
    # too few seeds: said on the page, nothing sent
    page.fill("#walk-seeds", "7")
    page.click("#walk-submit")
    page.wait_for_selector("#walk-error:not([hidden])")
    assert "a loop needs two or more" in page.inner_text("#walk-error")


@pytest.mark.parametrize(
    ("animation", "pil_format", "suffix"),
    [("webp", "WEBP", "webp"), ("gif", "GIF", "gif"), ("apng", "PNG", "png")],
)
def test_a_loop_animation_and_its_download(
    page: Page, live: Server, animation: str, pil_format: str, suffix: str
) -> None:
    open_model(page, live, "digits-conditional")
    page.select_option("#walk-kind", "loop")
    page.fill("#walk-seeds", "5, 6, 7")
    page.fill("#walk-steps", "4")
    page.select_option("#gen-label", "2")
    assert page.locator("#walk-ms-field").is_hidden()
    page.select_option("#walk-as", animation)
    page.fill("#walk-ms", "80")
    page.click("#walk-submit")
    page.wait_for_selector("#walk-figure:not([hidden])")
    page.wait_for_function("() => document.querySelector('#walk-animation').naturalWidth > 0")
    size = page.evaluate(
        "(() => { const img = document.querySelector('#walk-animation');"
        " return [img.naturalWidth, img.naturalHeight]; })()"
    )
    assert size == [32, 32], "the model's own size"
    assert page.locator("#walk-strip img").count() == 0
    summary = page.inner_text("#walk-summary")
    assert summary.startswith("12 frames by slerp through seeds 5 → 6 → 7 → 5, 80 ms each")
    alt = page.get_attribute("#walk-animation", "alt") or ""
    assert "12 frames of 80 ms" in alt
    shot(page, f"03-walk-animation-{animation}")
    media_type = f"image/{animation}"
    assert page.get_attribute("#walk-download", "type") == media_type
    with page.expect_download() as download:
        page.click("#walk-download")
    assert download.value.suggested_filename == f"digits-conditional-v1-walk-5-6-7.{suffix}"
    saved = Path(download.value.path()).read_bytes()
    with Image.open(io.BytesIO(saved)) as image:
        assert (image.format, image.size, getattr(image, "n_frames", 1)) == (pil_format, (32, 32), 12)
    direct = httpx.post(
        f"{live.url}/walk",
        json={"model": "digits-conditional", "seeds": [5, 6, 7], "steps": 4, "label": 2, "method": "slerp"}
        | {"animation": animation, "frame_ms": 80},
        timeout=30,
    )
    assert direct.headers["content-type"] == media_type and saved == direct.content


def test_style_model_psi_noise_and_mixing(page: Page, live: Server) -> None:
    open_model(page, live, "digits-style")
    assert page.is_visible("#psi-field") and not page.is_visible("#truncation-field")
    assert page.is_visible("#gen-noise") and page.is_visible("#mix-panel")
    assert page.input_value("#walk-method") == "lerp"  # StyleGAN walks in w by lerp
    page.fill("#gen-psi", "0.5")
    page.dispatch_event("#gen-psi", "input")
    assert page.inner_text("#gen-psi-value") == "0.50"
    shown = generate_grid(page, 4, "40", "6")
    body = {"model": "digits-style", "n": 4, "seed": 40, "labels": 6, "truncation_psi": 0.5}
    assert shown == [pixel_digest(image) for image in api_images(live, "/generate", body)]
    # Re-roll: the same seeds and styles with other noise images (other fine detail)
    before = page.inner_text("#gen-summary")
    page.click("#gen-noise")
    page.wait_for_function(
        "(before) => document.querySelector('#gen-summary').textContent !== before", arg=before
    )
    rerolled = image_digests(page, "#gen-grid img")
    assert len(rerolled) == 4 and not set(rerolled) & set(shown)
    noise_seed = int(re.search(r"noise seed (\d+)", page.inner_text("#gen-summary")).group(1))  # type: ignore[union-attr]
    again = api_images(live, "/generate", body | {"noise_seed": noise_seed})
    assert rerolled == [pixel_digest(image) for image in again]
    # the style-mixing grid, as the API draws it
    page.fill("#mix-rows", "1, 2")
    page.fill("#mix-cols", "3,4,5")
    page.select_option("#mix-crossover", "fine")
    page.click("#mix-submit")
    page.wait_for_selector("#mix-figure:not([hidden])")
    page.wait_for_function("() => document.querySelector('#mix-image').naturalWidth > 0")
    shot(page, "04-style-mixing")
    figure = httpx.post(
        f"{live.url}/mix",
        json={"model": "digits-style", "row_seeds": [1, 2], "col_seeds": [3, 4, 5], "crossover": "fine"}
        | {"label": 6, "truncation_psi": 0.5},
        headers={"accept": "image/png"},
        timeout=30,
    )
    assert figure.status_code == 200, figure.text
    assert image_digests(page, "#mix-image") == [pixel_digest(figure.content)]
    with page.expect_download() as download:
        page.click("#mix-download")
    assert download.value.suggested_filename == "digits-style-mix-fine.png"


def test_upscale_compare_and_download(page: Page, live: Server, tmp_path: Path) -> None:
    picture = tmp_path / "cat.png"
    picture.write_bytes(photo(40, 30))
    open_model(page, live, "digits")
    page.select_option("#model", "srresnet-x2")
    page.wait_for_selector("#upscaler:not([hidden])")
    assert page.locator("#generator").is_hidden()
    page.set_input_files("#up-file", str(picture))
    wait_for_text(page, "#up-chosen", "40×30")
    page.click("#up-submit")
    page.wait_for_selector("#up-result:not([hidden])")
    assert page.inner_text("#up-sizes").startswith("Input 40×30 → output 80×60 (×2 by srresnet-x2")
    # Before and after are shown at the same size.
    boxes = [page.locator(f"#up-{which}").bounding_box() for which in ("before", "after")]
    assert boxes[0] == boxes[1] and boxes[0]["width"] > 80
    # The slider moves the split, by keyboard too.
    page.focus("#up-split")
    for _ in range(3):
        page.keyboard.press("ArrowLeft")
    assert page.input_value("#up-split") == "47"
    assert (
        page.evaluate("getComputedStyle(document.querySelector('#compare')).getPropertyValue('--split')")
        == "47%"
    )
    shot(page, "04-upscale-slider")
    page.check("#up-side")
    shot(page, "05-upscale-side-by-side")
    sides = [page.locator(f"#up-{which}").bounding_box() for which in ("before", "after")]
    assert sides[0]["x"] < sides[1]["x"] and sides[0]["width"] == pytest.approx(sides[1]["width"], abs=1)

    with page.expect_download() as download:
        page.click("#up-download")
    assert download.value.suggested_filename == "cat-srresnet-x2.png"
    with Image.open(download.value.path()) as result:
        assert (result.format, result.size) == ("PNG", (80, 60))
    direct = httpx.post(
        f"{live.url}/upscale?model=srresnet-x2",
        content=picture.read_bytes(),
        headers={"Content-Type": "image/png"},
        timeout=30,
    )
    assert Path(download.value.path()).read_bytes() == direct.content


def test_a_dropped_image_and_another_output_format(page: Page, live: Server) -> None:
    open_model(page, live, "srresnet-x2")
    encoded = base64.b64encode(photo(24, 16)).decode()
    page.evaluate(
        """(encoded) => {
            const bytes = Uint8Array.from(atob(encoded), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], "dropped.png", { type: "image/png" }));
            document.querySelector("#drop-zone").dispatchEvent(
                new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }));
        }""",
        encoded,
    )
    wait_for_text(page, "#up-chosen", "dropped.png")
    page.select_option("#up-format", "webp")
    page.click("#up-submit")
    page.wait_for_selector("#up-result:not([hidden])")
    assert re.match(r"Download 48×32 WEBP \(", page.inner_text("#up-download"))
    with page.expect_download() as download:
        page.click("#up-download")
    assert download.value.suggested_filename == "dropped-srresnet-x2.webp"
    with Image.open(download.value.path()) as result:
        assert (result.format, result.size) == ("WEBP", (48, 32))


def test_a_scale_factor_with_tile_progress(page: Page, live: Server, tmp_path: Path) -> None:
    """Scale 2.5 on the x2 model: its output, then a Lanczos resize to 2.5 times the input; the
    answer comes as NDJSON, row of tiles by row (224x200 is 2 x 2 tiles of 128, overlap 32)."""
    picture = tmp_path / "wide.png"
    picture.write_bytes(photo(224, 200))
    open_model(page, live, "srresnet-x2")
    assert page.inner_text("#up-native-text") == "the model's own, ×2"
    page.check("input[name='up-size'][value='scale']")
    assert page.is_visible("#up-scale") and not page.is_visible("#up-width")
    assert page.get_attribute("#up-scale", "max") == "4", "up to the largest served factor"
    page.fill("#up-scale", "2.5")
    accepts = accept_headers(page, "/upscale")
    record_texts(page, "#up-progress-text")
    upscale_page(page, picture)
    assert accepts == ["application/x-ndjson"]
    assert page.inner_text("#up-sizes").startswith("Input 224×200 → output 560×500 (×2.5 asked)")
    assert page.inner_text("#up-progress-text") == "4 of 4 tiles"
    bar = page.locator("#up-progress")
    assert bar.evaluate("(bar) => [bar.value, bar.max]") == [4, 4]
    texts = page.evaluate("window.seenTexts")
    assert texts[0] == "sending the image…" and "0 of 4 tiles" in texts and texts[-1] == "4 of 4 tiles"
    assert how_made(page) == {
        "Models": "srresnet-x2@1",
        "Resize": "lanczos 448×400 to 560×500",
        "Bit depth": "8 bits a channel",
        "Metadata": "kept, GPS dropped",
    }
    shot(page, "05-upscale-scale-progress")
    with page.expect_download() as download:
        page.click("#up-download")
    direct = api_upscale(live, picture, "model=srresnet-x2&scale=2.5")
    assert direct.headers["x-output-size"] == "560x500"
    assert Path(download.value.path()).read_bytes() == direct.content
    # the compare view has the output's shape
    assert (
        page.evaluate("getComputedStyle(document.querySelector('#compare')).getPropertyValue('--aspect')")
        == "560 / 500"
    )
    # beyond the largest served factor: the server's own words
    page.fill("#up-scale", "5")
    page.click("#up-submit")
    page.wait_for_selector("#up-error:not([hidden])")
    assert page.inner_text("#up-error") == (
        "scale is 5; an upscale enlarges by 1 to 4 (the largest served model's factor) (HTTP 400)"
    )


def test_detail_blends_the_family_at_a_size_with_cover(page: Page, live: Server, tmp_path: Path) -> None:
    picture = tmp_path / "cat.png"
    picture.write_bytes(photo(40, 30))
    open_model(page, live, "srresnet-x2")  # in no family: nothing to blend
    assert page.is_disabled("#up-detail")
    help_text = page.inner_text("#up-detail-help")
    assert "srresnet-x2 is in no family" in help_text and "photo-x4" in help_text
    page.select_option("#model", "srresnet-x4")
    page.wait_for_function("() => !document.querySelector('#up-detail').disabled")
    assert page.input_value("#up-detail") == "0", "starts at the picked model alone"
    assert "0 is srresnet-x4" in page.inner_text("#up-detail-help")
    assert "1 is srgan-x4" in page.inner_text("#up-detail-help")
    set_range(page, "#up-detail", "0.5")
    assert page.inner_text("#up-detail-value") == "0.50"
    page.check("input[name='up-size'][value='box']")
    page.fill("#up-width", "100")
    page.fill("#up-height", "100")
    page.select_option("#up-fit", "cover")
    upscale_page(page, picture)
    assert page.inner_text("#up-sizes").startswith("Input 40×30 → output 100×100 (100×100 asked, cover)")
    assert how_made(page) == {
        "Models": "srresnet-x4@1, srgan-x4@1",
        "Detail": "0.5 (50% srresnet-x4, 50% srgan-x4)",
        "Resize": "lanczos 160×120 to 133×100",
        "Crop": "100×100 from (16, 0)",
        "Bit depth": "8 bits a channel",
        "Metadata": "kept, GPS dropped",
    }
    shot(page, "05-upscale-detail-cover")
    with page.expect_download() as download:
        page.click("#up-download")
    assert download.value.suggested_filename == "cat-srresnet-x4.png"
    direct = api_upscale(live, picture, "model=srresnet-x4&width=100&height=100&fit=cover&detail=0.5")
    assert direct.headers["x-models"] == "srresnet-x4@1, srgan-x4@1"
    assert Path(download.value.path()).read_bytes() == direct.content
    # all the way to 1: the detail model alone
    set_range(page, "#up-detail", "1")
    page.check("input[name='up-size'][value='native']")
    upscale_page(page, picture)
    assert page.inner_text("#up-sizes").startswith("Input 40×30 → output 160×120 (×4 by srresnet-x4 v1)")
    assert how_made(page)["Models"] == "srgan-x4@1"


def gps_jpeg(path: Path) -> None:
    """A small JPEG whose EXIF has a camera name and a GPS position."""
    image = Image.open(io.BytesIO(photo(40, 30))).convert("RGB")
    exif = image.getexif()
    exif[0x010F] = "TestCam"
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2] = "N", (48.0, 51.0, 30.0)
    image.save(path, format="JPEG", quality=95, exif=exif.tobytes())


def test_the_metadata_choice(page: Page, live: Server, tmp_path: Path) -> None:
    picture = tmp_path / "camera.jpg"
    gps_jpeg(picture)
    open_model(page, live, "srresnet-x2")
    kept: dict[str, dict[str, object]] = {}
    said_of = {"none": "all kept", "gps": "kept, GPS dropped", "all": "dropped (colour profile kept)"}
    for strip, said in said_of.items():
        page.select_option("#up-strip", strip)
        upscale_page(page, picture)
        assert how_made(page)["Metadata"] == said
        with page.expect_download() as download:
            page.click("#up-download")
        assert download.value.suggested_filename == "camera-srresnet-x2.jpg"
        with Image.open(download.value.path()) as result:
            exif = result.getexif()
            kept[strip] = {"make": exif.get(0x010F), "gps": dict(exif.get_ifd(0x8825))}
    assert kept["none"]["make"] == "TestCam" and kept["none"]["gps"]
    assert kept["gps"]["make"] == "TestCam" and not kept["gps"]["gps"]
    assert kept["all"] == {"make": None, "gps": {}}


def test_an_oversize_upload_shows_the_servers_message(page: Page, live: Server, tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    big.write_bytes(photo(300, 250))  # 75,000 pixels, over the server's 65,536
    refused = httpx.post(
        f"{live.url}/upscale", content=big.read_bytes(), headers={"Content-Type": "image/png"}, timeout=30
    )
    assert refused.status_code == 413
    message = refused.json()["error"]["message"]
    open_model(page, live, "srresnet-x2")
    page.set_input_files("#up-file", str(big))
    page.click("#up-submit")
    page.wait_for_selector("#up-error:not([hidden])")
    shot(page, "06-upscale-oversize")
    assert page.inner_text("#up-error") == f"{message} (HTTP 413)"
    assert page.get_attribute("#up-error", "role") == "alert"
    assert page.locator("#up-result").is_hidden()

    # Not an image at all: the server's word again, not a silent failure.
    text = tmp_path / "notes.png"
    text.write_text("not really a picture")
    page.set_input_files("#up-file", str(text))
    page.click("#up-submit")
    page.wait_for_function(
        "() => document.querySelector('#up-error').textContent.includes('not a readable image')"
    )


def test_live_view_of_the_service(page: Page, live: Server) -> None:
    for seed in range(5):
        api_images(live, "/generate", {"model": "digits", "n": 4, "seed": seed})
    open_model(page, live, "digits")
    page.wait_for_selector("#live-models tbody tr:nth-child(6)")
    rows = page.locator("#live-models tbody tr").all_inner_texts()
    assert [row.split("\t")[:3] for row in rows] == [
        ["digits v1", "generate", "CPU"],
        ["digits-conditional v1", "generate", "CPU"],
        ["digits-style v1", "generate", "CPU"],
        ["srgan-x4 v1", "upscale", "CPU"],
        ["srresnet-x2 v1", "upscale", "CPU"],
        ["srresnet-x4 v1", "upscale", "CPU"],
    ]
    # Requests made while the page watches show up as a rate and a latency.
    page.wait_for_timeout(2500)
    for seed in range(10):
        api_images(live, "/generate", {"model": "digits", "n": 2, "seed": seed})
    page.wait_for_function(
        """() => { const cells = document.querySelector('#live-endpoints tbody tr').children;
                   return Number(cells[1].textContent) > 0 && cells[2].textContent.endsWith('s'); }"""
    )
    chart = page.get_attribute("#live-batches figure:first-child svg", "aria-label")
    assert chart is not None and chart.startswith("Batch sizes of digits: up to ")
    assert "service: ready" in page.inner_text("#service-status")
    shot(page, "07-live-view")


def test_metrics_arithmetic_in_the_page(page: Page, live: Server) -> None:
    """The page's reading of Prometheus text and its quantiles, checked against hand-worked
    values (PromQL's histogram_quantile: linear within a bucket)."""
    page.goto(f"{live.url}/")
    result = page.evaluate(
        """async () => {
            const m = await import("/playground/metrics.js");
            const text = [
                '# HELP x y',
                'lat_bucket{endpoint="/a",le="0.1"} 10',
                'lat_bucket{endpoint="/a",le="0.2"} 30',
                'lat_bucket{endpoint="/a",le="0.5"} 40',
                'lat_bucket{endpoint="/a",le="+Inf"} 40',
                'lat_bucket{endpoint="/b",le="0.1"} 1',
                'lat_bucket{endpoint="/b",le="0.2"} 1',
                'lat_bucket{endpoint="/b",le="0.5"} 1',
                'lat_bucket{endpoint="/b",le="+Inf"} 3',
                'odd{name="say \\\\"hi\\\\""} 2.5',
            ].join("\\n");
            const s = m.parseMetrics(text);
            const a = m.buckets(s, "lat", { endpoint: "/a" });
            const b = m.buckets(s, "lat", { endpoint: "/b" });
            return {
                median: m.quantile(0.5, a), p99: m.quantile(0.99, a), tail: m.quantile(0.99, b),
                empty: m.quantile(0.5, new Map()), odd: m.select(s, "odd")[0].labels.name,
                delta: m.quantile(0.5, m.bucketDelta(a, m.buckets(s, "lat", { endpoint: "/a" }))),
                bars: m.histogramBars(a).map((bar) => bar.count),
            };
        }"""
    )
    assert result["median"] == pytest.approx(0.15)  # rank 20: halfway through (0.1, 0.2]
    assert result["p99"] == pytest.approx(0.488)  # rank 39.6: 96% through (0.2, 0.5]
    assert result["tail"] == pytest.approx(0.5)  # in +Inf: the highest finite bound
    assert result["empty"] is None and result["delta"] is None
    assert result["odd"] == 'say "hi"'
    assert result["bars"] == [10, 20, 10, 0]


def test_ndjson_reading_in_the_page(page: Page, live: Server) -> None:
    """The page's NDJSON reader: lines split across chunks, blank lines, and a last error line
    (a failure after the answer began) thrown as the server's message."""
    page.goto(f"{live.url}/")
    result = page.evaluate(
        """async () => {
            const api = await import("/playground/api.js");
            const chunks = ['{"n": 2}\\n{"ind', 'ex": 0}\\n\\n{"index": 1}\\n{"error": {"code": "dead',
                            'line_exceeded", "message": "too late"}}\\n'];
            const encoder = new TextEncoder();
            const body = new ReadableStream({
                start(controller) {
                    chunks.forEach((chunk) => controller.enqueue(encoder.encode(chunk)));
                    controller.close();
                },
            });
            const seen = [];
            try {
                for await (const line of api.ndjson(new Response(body))) seen.push(line);
            } catch (error) {
                return { seen, code: error.code, message: error.message, status: error.status };
            }
            return { seen };
        }"""
    )
    assert result == {
        "seen": [{"n": 2}, {"index": 0}, {"index": 1}],
        "code": "deadline_exceeded",
        "message": "too late",
        "status": 0,
    }


def test_keyboard_and_labels(page: Page, live: Server) -> None:
    open_model(page, live, "digits-conditional")
    # Every visible control has a label a screen reader announces.
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input, select, button')]
            .filter((el) => el.offsetParent !== null || el.type === 'file')
            .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                            && !(el.tagName === 'BUTTON' && el.textContent.trim()))
            .map((el) => el.id || el.outerHTML)"""
    )
    assert unlabelled == []
    # Type a seed and press Enter: the grid comes; Tab to an image and press Enter: it downloads.
    page.fill("#gen-n", "2")
    page.focus("#gen-seed")
    page.keyboard.press("Control+a")
    page.keyboard.type("77")
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.querySelectorAll('#gen-grid img').length === 2")
    page.focus("#gen-submit")
    for _ in range(20):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.closest('#gen-grid') !== null"):
            break
    with page.expect_download() as download:
        page.keyboard.press("Enter")
    assert download.value.suggested_filename.startswith("digits-conditional-v1-seed77-")


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_no_accessibility_violations(browser: Browser, live: Server, tmp_path: Path, scheme: str) -> None:
    """axe-core's WCAG rules (labels, contrast, names, roles, landmarks, ...) on each panel with
    its results shown, in both colour schemes."""
    picture = tmp_path / "cat.png"
    picture.write_bytes(photo(40, 30))
    context = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme=scheme)
    tab = context.new_page()
    axe = Axe()
    try:
        open_model(tab, live, "digits-conditional")
        generate_grid(tab, 4, "8", "2")
        tab.click("#walk-submit")
        tab.wait_for_selector("#walk-strip img")
        tab.wait_for_selector("#live-batches figure")
        generator = axe.run(tab)
        assert generator.violations_count == 0, generator.generate_report()
        tab.select_option("#model", "digits-style")
        tab.wait_for_selector("#mix-panel:not([hidden])")
        tab.select_option("#walk-kind", "loop")
        tab.select_option("#walk-as", "webp")
        tab.click("#walk-submit")
        tab.wait_for_selector("#walk-figure:not([hidden])")
        tab.click("#mix-submit")
        tab.wait_for_selector("#mix-figure:not([hidden])")
        style = axe.run(tab)
        assert style.violations_count == 0, style.generate_report()
        tab.select_option("#model", "srresnet-x2")  # the detail slider off, with its hint
        tab.wait_for_selector("#upscaler:not([hidden])")
        assert tab.is_disabled("#up-detail")
        off = axe.run(tab)
        assert off.violations_count == 0, off.generate_report()
        tab.select_option("#model", "srresnet-x4")  # a family: the slider on; a size with cover
        tab.check("input[name='up-size'][value='box']")
        tab.fill("#up-width", "60")
        tab.fill("#up-height", "60")
        tab.select_option("#up-fit", "cover")
        upscale_page(tab, picture)
        upscaler = axe.run(tab)
        assert upscaler.violations_count == 0, upscaler.generate_report()
        shot(tab, f"10-upscaler-{scheme}")
    finally:
        context.close()


def test_narrow_screen(browser: Browser, live: Server, tmp_path: Path) -> None:
    picture = tmp_path / "cat.png"
    picture.write_bytes(photo(40, 30))
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    tab = context.new_page()
    try:
        open_model(tab, live, "digits-conditional")
        generate_grid(tab, 4, "3", "")
        tab.wait_for_selector("#live-models tbody tr")
        shot(tab, "08-narrow")
        overflow = tab.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the page is {overflow} px wider than a 390 px screen"
        live_box = tab.locator("#live").bounding_box()
        try_box = tab.locator("#try").bounding_box()
        assert live_box["y"] > try_box["y"] + try_box["height"] - 1, "one column: the live view below"
        # the upscaler's size controls and its answer fit a phone too
        tab.select_option("#model", "srresnet-x4")
        tab.check("input[name='up-size'][value='box']")
        tab.fill("#up-width", "60")
        tab.fill("#up-height", "60")
        upscale_page(tab, picture)
        shot(tab, "08-narrow-upscaler")
        overflow = tab.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the upscaler is {overflow} px wider than a 390 px screen"
    finally:
        context.close()


def test_api_key_asked_for_and_used(browser: Browser, make_server: Callable[..., Server]) -> None:
    key = "playground-test-key-0123456789"
    keyed = make_server(["digits"], api_keys=key)
    context = browser.new_context()
    tab = context.new_page()
    try:
        tab.goto(f"{keyed.url}/")
        tab.wait_for_selector("#page-error:not([hidden])")
        assert "a valid API key is needed" in tab.inner_text("#page-error")
        assert tab.evaluate("document.querySelector('#key-box').open")
        shot(tab, "09-api-key-needed")
        tab.fill("#api-key", key)
        tab.press("#api-key", "Enter")
        tab.wait_for_selector("#generator:not([hidden])")
        tab.click("#gen-submit")
        tab.wait_for_selector("#gen-grid img")
        tab.wait_for_function(
            "() => document.querySelector('#service-status').textContent === 'service: ready'"
        )
    finally:
        context.close()


def test_a_version_is_picked_and_pinned(browser: Browser, tmp_path: Path) -> None:
    """Two versions of digits side by side: the page offers the default and each version; a
    picked version is pinned in the requests and in the link."""
    from bench.swap_bench import publish

    repo = tmp_path / "models"
    publish(repo, 1)
    publish(repo, 2)
    srv = start_server(tmp_path, repo, version_policy="latest:2", repository_poll_s=0)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.set_default_timeout(20_000)
    try:
        open_model(tab, srv, "digits")
        options = tab.locator("#version option").all_inner_texts()
        assert options == ["default (v2)", "v1", "v2 · default"]
        default_grid = generate_grid(tab, 2, "40", None)
        assert "from digits v2" in tab.inner_text("#gen-summary")
        tab.select_option("#version", "1")
        assert tab.evaluate("location.hash") == "#model=digits&version=1"
        assert "Pinned to version 1" in tab.inner_text("#model-info")
        pinned_grid = generate_grid(tab, 2, "40", None)
        assert "from digits v1" in tab.inner_text("#gen-summary")
        expected = api_images(srv, "/generate", {"model": "digits@1", "seed": 40, "n": 2})
        assert pinned_grid == [pixel_digest(png) for png in expected] != default_grid
        shot(tab, "11-version-pinned")
        tab.reload()  # the link opens the same version
        tab.wait_for_selector("#generator:not([hidden])")
        assert tab.input_value("#version") == "1"
    finally:
        context.close()
        srv.stop()
    assert not errors, f"script errors on the page: {errors}"
