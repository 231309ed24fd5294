"""The screenshot of the playground in docs/api.md: headless Chromium against a running service with the
bundled models (a grid of 16 digits, a latent walk, the live view after a little traffic).

    gan-serve --models models &
    python scripts/playground_screenshot.py --url http://127.0.0.1:8000 --out docs/playground.png

Needs the `dev` extra (Playwright) and Debian's chromium (`make browser`)."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--out", type=Path, default=Path("docs/playground.png"))
    parser.add_argument("--model", default="digits-conditional")
    opts = parser.parse_args()
    url = opts.url.rstrip("/")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("chromium is not installed (make browser)", file=sys.stderr)
        return 2
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{url}/#model={opts.model}")
        page.wait_for_selector("#generator:not([hidden])")
        page.fill("#gen-n", "16")
        page.fill("#gen-seed", "2026")
        page.click("#gen-submit")
        page.wait_for_function("() => document.querySelectorAll('#gen-grid img').length === 16")
        page.fill("#walk-to", "2031")
        page.fill("#walk-steps", "10")
        page.click("#walk-submit")
        page.wait_for_function("() => document.querySelectorAll('#walk-strip img').length === 10")
        # A little traffic, so the live view has rates, latencies and batches to show.
        with httpx.Client(base_url=url, timeout=30) as client:
            for seed in range(40):
                client.post("/generate", json={"model": opts.model, "n": 1 + seed % 8, "seed": seed})
        page.wait_for_timeout(2500)
        opts.out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(opts.out), full_page=True)
        browser.close()
    print(f"wrote {opts.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
