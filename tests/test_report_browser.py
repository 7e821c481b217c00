"""The HTML report in a real browser: headless Chromium driven through chromedriver.

The report is opened from disk. The test asserts that no request leaves the file
(every URL the browser asked for, from Chrome's own network log and the page's
resource timing, is file:, data: or blob:), that the console shows no errors, that
the map and the size chart rendered with non-zero size and contain their points and
bars, and that hostile corpus texts (``<script>``, ``onerror``) were shown as text
and did not execute. A screenshot is saved next to the report (and copied to
``$TEXTCLUST_SCREENSHOT_DIR`` when set).

Skips with the reason when Chromium, chromedriver or selenium is missing
(``.ci/run`` installs them as root with apt-get).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:")
BLOCKED = ["http://*", "https://*", "ws://*", "wss://*", "ftp://*", "*://*:*"]
HOSTILE = [
    '<script>window.__pwned = "script";</script> refund never arrived for the returned kettle',
    '<img src=x onerror="window.__pwned = \'img\'"> refund still missing after I returned the sofa',
    '"><svg onload="window.__pwned = \'svg\'"> my refund for the returned lamp is late <b>bold?</b>',
]


def browser_missing() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is absent (install the Debian packages chromium and chromium-driver; .ci/run does as root)"
    if not CHROMEDRIVER.exists():
        return f"{CHROMEDRIVER} is absent (install the Debian package chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    return None


@contextmanager
def chromium(width: int = 1300, height: int = 1000):
    """A headless Chromium (selenium WebDriver) with network and console logging, in a temp profile."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="textclust-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-dev-shm-usage", "--no-first-run", "--disable-extensions", "--disable-sync",
                "--disable-component-update", "--disable-default-apps", "--mute-audio",
                f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    options.add_argument("--host-resolver-rules=MAP * ~NOTFOUND")  # no name resolves: nothing can leave
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        driver.set_page_load_timeout(60)
        # Belt and braces: network URLs are blocked inside the browser; they still show in the log.
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": BLOCKED})
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def open_report(driver, path: Path) -> float:
    """Open a report from disk; return seconds until the load event fired and both charts are drawn."""
    driver.get_log("performance")  # drop what the browser's own start page asked for
    start = time.perf_counter()
    driver.get(Path(path).resolve().as_uri())
    deadline = start + 60
    while time.perf_counter() < deadline:
        ready = driver.execute_script(
            "return document.readyState === 'complete' && "
            "!!document.querySelector('#sizes-chart .main-svg') && "
            "(!document.getElementById('map-caption') || !!document.querySelector('#map-chart .main-svg'));")
        if ready:
            break
        time.sleep(0.02)
    return time.perf_counter() - start


def requested_urls(driver) -> list[str]:
    """Every URL requested since the page was opened: Chrome's network log plus the page's resource timing.

    Only the browser's own internal pages (chrome://, loaded by its start page, not by
    ours) are left out; any other request from anywhere counts.
    """
    page = driver.current_url
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            params = message["params"]
            url = params["request"]["url"]
            if url.startswith("chrome:") and params.get("documentURL") != page:
                continue
            urls.append(url)
        elif message.get("method") == "Network.webSocketCreated":
            urls.append(message["params"]["url"])
    urls += driver.execute_script(
        "return performance.getEntries().filter(e => e.name && e.entryType !== 'mark' && e.entryType !== 'measure')"
        ".filter(e => ['navigation', 'resource'].includes(e.entryType)).map(e => e.name);")
    return urls


def element_size(driver, selector: str) -> dict:
    return driver.execute_script(
        "const e = document.querySelector(arguments[0]); if (!e) return null;"
        "const r = e.getBoundingClientRect(); return {width: r.width, height: r.height};", selector)


# --- the test ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hostile_report(tmp_path_factory):
    """A model-free run whose texts, goal and corpus name carry HTML/script, and its HTML report."""
    reason = browser_missing()
    if reason:
        pytest.skip(reason)
    from conftest import FAKE_MODEL, make_blobs
    from textclust.ingest import corpus_from_texts
    from textclust.config import RunConfig
    from textclust.pipeline import Pipeline
    from textclust.report.html import write_report
    from textclust.report.model import ReportOptions
    from textclust.store import Database

    blobs = make_blobs()
    texts, X = list(blobs.texts), blobs.X.copy()
    refund = [i for i, g in enumerate(blobs.groups) if g == 0]
    e = np.eye(X.shape[1], dtype=np.float32)
    for j, (i, hostile) in enumerate(zip(refund, HOSTILE)):
        texts[i] = hostile
        # Near the blob's centre, among its most representative texts; each in a direction of its own,
        # as identical embeddings would make them near-duplicates, of which a report lists one.
        X[i] = (e[0] + 0.4 * e[3 + j]) / np.linalg.norm(e[0] + 0.4 * e[3 + j])
    folder = tmp_path_factory.mktemp("browser")
    corpus = corpus_from_texts(texts, name='<img src=x onerror="window.__pwned=\'name\'">corpus')
    db = Database(folder / "hostile.db")
    db.save_corpus(corpus)
    db.store_embeddings(FAKE_MODEL, corpus.text_ids, X)
    run_id = Pipeline(db, RunConfig.from_flat(k=3, reduction="none", embedding_model=FAKE_MODEL, rounds=1)).run(
        corpus, '<script>window.__pwned = "goal";</script> which topic')
    path = folder / "report.html"
    write_report(db, run_id, path, "html", ReportOptions(reduction="pca"))
    db.close()
    return path


def test_report_in_headless_chromium(hostile_report):
    with chromium() as driver:
        seconds = open_report(driver, hostile_report)
        assert seconds < 30, f"the report took {seconds:.1f} s to render"

        # Nothing but the file itself (and inline data:/blob: URLs) was requested.
        urls = requested_urls(driver)
        assert any(u.startswith("file:") for u in urls), urls  # the log really captured requests
        outside = [u for u in urls if not u.startswith(LOCAL_SCHEMES)]
        assert not outside, f"the report contacted: {outside}"

        # No console errors (warnings are allowed).
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors

        # The hostile texts did not run, and show literally as text.
        assert driver.execute_script("return window.__pwned === undefined;"), \
            driver.execute_script("return String(window.__pwned);")
        body = driver.execute_script("return document.body.innerText;")
        assert '<script>window.__pwned = "goal";</script> which topic' in body
        assert '<img src=x onerror="window.__pwned=\'name\'">corpus' in body
        for hostile in HOSTILE:  # listed as the refund explanation's most representative texts
            assert hostile in body
        assert driver.execute_script("return document.querySelectorAll('main script').length") == \
            driver.execute_script("return document.querySelectorAll('.chart script').length")
        assert not driver.execute_script("return document.querySelector('img, svg[onload]')")  # no element injected

        # The map: an SVG of non-zero size with one marker per distinct non-empty text.
        size = element_size(driver, "#map-chart .main-svg")
        assert size and size["width"] > 100 and size["height"] > 100, size
        n_points = driver.execute_script("return document.querySelectorAll('#map-chart .scatterlayer .point').length")
        assert n_points == 60
        # Hover text of a hostile point is the literal text (plotly draws it as SVG text, not markup).
        hover_data = driver.execute_script(
            "return document.getElementById('map-chart').data.map(t => t.hovertext.join('\\n')).join('\\n');")
        assert "&lt;script&gt;" in hover_data and "<script>" not in hover_data

        # The bar chart: 3 explanations + uncovered, bars with a non-zero size.
        size = element_size(driver, "#sizes-chart .main-svg")
        assert size and size["width"] > 100 and size["height"] > 100, size
        bars = driver.execute_script(
            "return [...document.querySelectorAll('#sizes-chart .bars .point path')]"
            ".map(p => p.getBoundingClientRect().width);")
        assert len(bars) == 4
        assert sum(w > 50 for w in bars) == 3  # three explanations of 20 texts; the uncovered bar is empty
        assert "Coverage" in driver.execute_script("return document.querySelector('#sizes-chart .gtitle').textContent;")

        shot = hostile_report.with_suffix(".png")
        driver.set_window_size(1300, 2200)
        assert driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 20_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        if os.environ.get("TEXTCLUST_SCREENSHOT_DIR"):
            shutil.copy(shot, Path(os.environ["TEXTCLUST_SCREENSHOT_DIR"]) / "report.png")


def test_external_request_would_be_caught(tmp_path):
    """The request check itself can fail: a page that loads a remote image is caught (and blocked)."""
    reason = browser_missing()
    if reason:
        pytest.skip(reason)
    page = tmp_path / "leaky.html"
    page.write_text('<!DOCTYPE html><html><body><img src="http://192.0.2.1/pixel.png"></body></html>')
    with chromium() as driver:
        driver.get(page.as_uri())
        outside = [u for u in requested_urls(driver) if not u.startswith(LOCAL_SCHEMES)]
    assert "http://192.0.2.1/pixel.png" in outside
