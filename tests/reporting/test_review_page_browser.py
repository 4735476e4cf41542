"""The review page in a real browser: headless Chromium (Debian's package) driven by Playwright's Python package.

Every image must load, the galleries must hold as many scans as the CSV says, and no request may
leave the file system. Without Playwright or Chromium the test is skipped, unless
XSCAN_REQUIRE_BROWSER=1 (set by .ci/run), where their absence is a failure.
"""

import shutil
from pathlib import Path

import pytest
from support.browser import CHROMIUM, need_browser
from support.review import REVIEW_GALLERY, expected_galleries

pytestmark = [pytest.mark.slow, pytest.mark.real_component]  # Chromium, started by the tests

# A bare, quiet browser: no GPU, no sandbox (CI runs as root), and none of Chromium's own calls home.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _visit(index: Path) -> tuple[list[str], list[dict], list[list], list[str]]:
    """Open INDEX in Chromium: each request's URL (any not file:// is refused), images, galleries, thumbnail links."""
    sync_playwright = need_browser()
    requests: list[str] = []

    def route(route):
        requests.append(route.request.url)
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.route("**/*", route)
            page.goto(index.resolve().as_uri(), wait_until="load")
            images = page.eval_on_selector_all(
                "img", "imgs => imgs.map(i => ({src: i.src, complete: i.complete, width: i.naturalWidth}))"
            )
            galleries = page.eval_on_selector_all(
                "section[data-gallery]",
                "sections => sections.map(s => "
                "[s.dataset.gallery, Number(s.dataset.total), s.querySelectorAll('figure.scan').length])",
            )
            links = page.eval_on_selector_all("figure.scan a", "anchors => anchors.map(a => a.href)")
        finally:
            browser.close()
    return requests, images, galleries, links


@pytest.fixture(scope="module")
def opened(review_run):
    results, page_folder, _ = review_run
    return results, *_visit(page_folder / "index.html")


def test_every_image_loads(opened):
    _, _, images, _, _ = opened
    assert len(images) >= 5 + 3  # five plots and at least a few thumbnails
    broken = [image["src"] for image in images if not (image["complete"] and image["width"] > 0)]
    assert broken == []


def test_gallery_counts_match_the_csv(opened):
    results, _, _, galleries, _ = opened
    expected = expected_galleries(results)
    assert [key for key, _, _ in galleries] == list(expected)
    for key, total, shown in galleries:
        assert (total, shown) == (expected[key], min(expected[key], REVIEW_GALLERY)), key


def test_no_request_leaves_the_file_system(opened):
    _, requests, images, _, links = opened
    assert len(requests) == len({image["src"] for image in images}) + 1  # the page and each image file once
    assert [url for url in requests if not url.startswith("file://")] == []
    assert links and all(link.startswith("file://") and link.endswith(".png") for link in links)


def test_the_route_would_see_a_request_that_leaves(review_run, tmp_path):
    """The check above can fail: a page with one remote image is caught, and that image does not load."""
    _, page_folder, _ = review_run
    shutil.copytree(page_folder, tmp_path / "page")
    index = tmp_path / "page" / "index.html"
    index.write_text(
        index.read_text(encoding="utf-8").replace("</body>", '<img src="https://cdn.example.com/x.png"></body>')
    )
    requests, images, _, _ = _visit(index)
    assert [url for url in requests if not url.startswith("file://")] == ["https://cdn.example.com/x.png"]
    assert [image["width"] for image in images if image["src"].startswith("https:")] == [0]


HOSTILE_PATHS = [  # file names a results file may hold: markup in them must stay text
    "scans/<script>document.title='xss'</script>.jpeg",
    'scans/"><img src=x onerror="document.title=\'xss\'">.png',
]


def test_markup_in_paths_errors_and_file_names_stays_text(tmp_path):
    from xscan.reporting.report import build_report, read_results
    from xscan.reporting.review_page import write_review_page
    from xscan.scoring.results import ResultsWriter, Row

    results = tmp_path / "r<script>document.title='xss'<\\script>.csv"
    with ResultsWriter(results) as writer:  # rows that failed: their gallery needs no model and no image
        writer.write([Row(path, None, 0.5, "m<i>odel</i>", "cannot read <b>file</b>") for path in HOSTILE_PATHS])
    rows = read_results(results)
    page = write_review_page(build_report(rows, source=str(results)), rows, results, tmp_path / "page", None)
    sync_playwright = need_browser()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            tab = browser.new_page()
            tab.goto(page.index.resolve().as_uri(), wait_until="load")
            title = tab.title()
            elements = tab.eval_on_selector_all("script, i, b, img[onerror]", "found => found.length")
            captions = tab.eval_on_selector_all("figure.scan", "figures => figures.map(f => f.dataset.path)")
            text = tab.inner_text("body")
        finally:
            browser.close()
    assert title == f"xscan review: {results}"  # not 'xss': no script ran
    assert elements == 0
    assert captions == HOSTILE_PATHS
    assert "cannot read <b>file</b>" in text and "m<i>odel</i>" in text
