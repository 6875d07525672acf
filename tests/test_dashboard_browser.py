"""The dashboard in real headless Chromium (Debian's chromium + chromedriver, driven by
selenium; nothing downloaded): every page loads and shows the database's numbers, a lineage
link leads to the parent, a live update arrives while the run is written, and hostile text
from candidates, evaluators and LLMs runs nothing. Screenshots of each page are saved to
``$EVOFORGE_SCREENSHOTS`` (default: a pytest temp dir) for review."""

from __future__ import annotations

import http.server
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_dashboard import append_program, make_run

from evoforge.dashboard import create_app, open_run
from evoforge.dashboard.server import running
from evoforge.program import MutationInfo, Program, Status
from evoforge.storages import SQLiteStorage

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
pytestmark = pytest.mark.skipif(
    not (os.access(CHROMIUM, os.X_OK) and os.access(DRIVER, os.X_OK)),
    reason=f"browser tests need Debian's chromium and chromium-driver ({CHROMIUM}, {DRIVER}); "
           "`apt-get install chromium chromium-driver` (scripts/setup.sh does it as root)")


class _Listener:
    """An HTTP server on loopback that records every request it gets (the XSS payloads try
    to reach it)."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        hits = self.hits

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                hits.append(self.path)
                self.send_response(204)
                self.end_headers()

            do_POST = do_GET  # noqa: N815

            def log_message(self, *args: Any) -> None:
                return None

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def listener() -> Iterator[_Listener]:
    lst = _Listener()
    yield lst
    lst.close()


def _payloads(listener_url: str) -> list[str]:
    js = f"document.title='PWNED';fetch('{listener_url}/hit')"
    return [
        f"<script>{js}</script>",
        f"<img src=x onerror=\"{js}\">",
        f"<a href=\"javascript:{js}\">click</a>",
        f"javascript:{js}",
        f"<svg onload=\"{js}\"></svg>",
        f"</pre></div><iframe src=\"{listener_url}/frame\"></iframe><b>html</b>",
        f"\"><script src=\"{listener_url}/s.js\"></script>",
    ]


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory: pytest.TempPathFactory, listener: _Listener
                ) -> tuple[Path, list[int]]:
    """A real run, plus programs whose code, reason, metric names, artifacts, model name and
    LLM exchange carry script-injection payloads."""
    run = make_run(tmp_path_factory.mktemp("browser"), programs=40)
    bad = "\n".join(_payloads(listener.url))
    ids = []
    for k, payload in enumerate(_payloads(listener.url)):
        ids.append(append_program(
            run, code=f"# EVOLVE-BLOCK-START\nX = {k}  # {payload}\n# EVOLVE-BLOCK-END\n",
            status=Status.FAILED if k % 2 else Status.OK, score=None if k % 2 else float(k),
            reason=f"stderr: {payload}", metrics={payload: 1.0, "combined_score": float(k)},
            artifacts={payload: bad, "stderr": payload},
            mutation=MutationInfo(mutator=payload, model=payload, edit_kind=payload,
                                  note=payload, arm=payload),
            exchange={"messages": [{"role": payload, "content": bad}], "reply": bad,
                      "model": payload, "attempts": 1, "outcome": payload}))
    return run, ids


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = os.environ.get("EVOFORGE_SCREENSHOTS")
    d = Path(where) if where else tmp_path_factory.mktemp("screenshots")
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1300,1000", "--no-first-run", "--disable-extensions",
                "--disable-background-networking", "--disable-component-update"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # an explicit driver path: Selenium Manager never runs (it would download a driver)
    driver = webdriver.Chrome(service=Service(executable_path=shutil.which(DRIVER) or DRIVER),
                              options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def site(hostile_run: tuple[Path, list[int]]) -> Iterator[str]:
    run, _ = hostile_run
    app = create_app([open_run(str(run)), open_run(str(run), name="second")],
                     poll_interval=0.1)
    with running(app) as url:
        yield url


def _stored(run: Path) -> list[Program]:
    with SQLiteStorage(run / "evoforge.db", readonly=True) as s:
        return list(s.programs())


def _text(driver: Any, css: str) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.CSS_SELECTOR, css).text)


def _assert_inert(driver: Any, title: str) -> None:
    """Nothing a payload tried happened: the title is ours, the DOM holds no element or
    attribute a payload would need, the only script is ours."""
    assert driver.title == title
    found = driver.execute_script("""
        const bad = [];
        for (const el of document.querySelectorAll('*')) {
          for (const a of el.attributes) {
            if (a.name.startsWith('on')) bad.push(el.tagName + ' ' + a.name);
            if ((a.name === 'href' || a.name === 'src' || a.name === 'xlink:href')
                && !a.value.startsWith('/') && !a.value.startsWith('#')) bad.push(a.value);
          }
        }
        const scripts = [...document.scripts].map(s => s.getAttribute('src'));
        return {bad, scripts, frames: document.querySelectorAll('iframe, img, embed, object').length};
    """)
    assert found == {"bad": [], "scripts": ["/static/dashboard.js"], "frames": 0}, found


def test_pages_show_the_databases_numbers(browser: Any, site: str, shots: Path,
                                          hostile_run: tuple[Path, list[int]]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    run, _ = hostile_run
    stored = _stored(run)
    oks = [p for p in stored if p.status is Status.OK and p.score is not None]
    best = max(oks, key=lambda p: (p.score, -p.done_seq))

    browser.get(site + "/")
    assert _text(browser, "#runs tbody tr:first-child td:nth-child(4)") == str(len(stored))
    browser.save_screenshot(str(shots / "index.png"))

    browser.get(site + "/runs/0")
    assert _text(browser, "#done") == str(len(stored))
    for st in ("ok", "failed", "invalid", "timeout", "crashed"):
        n = sum(1 for p in stored if p.status.value == st)
        assert _text(browser, f'#counts td[data-status="{st}"]') == str(n), st
    assert _text(browser, "#best").startswith(f"{best.score:.6g} (#{best.id})")
    assert browser.find_elements(By.CSS_SELECTOR, "#score-chart circle.pt")
    assert browser.find_elements(By.CSS_SELECTOR, "#arms tbody tr")
    browser.save_screenshot(str(shots / "overview.png"))

    grid = {g["island"]: g for g in httpx.get(site + "/api/runs/0/grid").json()["islands"]}
    browser.get(site + "/runs/0/grid")
    figs = browser.find_elements(By.CSS_SELECTOR, "figure.island")
    assert len(figs) == 2
    for fig in figs:
        isl = int(fig.get_attribute("id").split("-")[1])
        cells = fig.find_elements(By.CSS_SELECTOR, "rect.cell")
        assert len(cells) == len(grid[isl]["cells"]) > 0  # two features: one rect per cell
        top = max(c["best"] for c in grid[isl]["cells"])
        assert f"best {top:.6g} " in " ".join(
            c.find_element(By.TAG_NAME, "title").get_attribute("textContent") for c in cells)
        n_ok = sum(1 for p in oks if p.island == isl)
        assert fig.find_element(By.TAG_NAME, "figcaption").text.startswith(
            f"island {isl}: {n_ok} ok programs")
    browser.save_screenshot(str(shots / "grid.png"))

    browser.get(site + "/runs/0/programs")
    assert _text(browser, "#total").startswith(f"{len(stored)} programs")
    first = browser.find_element(By.CSS_SELECTOR, "#programs tbody tr:first-child td a")
    assert first.text == f"#{best.id}"
    browser.save_screenshot(str(shots / "programs.png"))
    browser.find_element(By.LINK_TEXT, "failed").click()  # a filter link
    WebDriverWait(browser, 20).until(lambda d: "status=failed" in d.current_url)
    n_failed = sum(1 for p in stored if p.status is Status.FAILED)
    assert _text(browser, "#total").startswith(f"{n_failed} programs")
    browser.find_element(By.LINK_TEXT, "recent").click()  # keeps the status filter
    WebDriverWait(browser, 20).until(lambda d: "sort=recent" in d.current_url)
    assert _text(browser, "#total").startswith(f"{n_failed} programs")

    browser.get(site + f"/runs/0/programs/{best.id}")
    assert _text(browser, "#score") == f"{best.score:.6g}"
    assert browser.find_elements(By.CSS_SELECTOR, "#code .hl")
    browser.save_screenshot(str(shots / "program.png"))

    browser.get(site + "/compare?a=0&b=1")
    assert browser.find_elements(By.CSS_SELECTOR, "#compare-chart path.series")
    assert _text(browser, "#compare tbody tr:first-child td:nth-child(2)") == str(len(stored))
    browser.save_screenshot(str(shots / "compare.png"))


def test_a_lineage_link_leads_to_the_parent(browser: Any, site: str,
                                            hostile_run: tuple[Path, list[int]]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    run, _ = hostile_run
    deepest = max((p for p in _stored(run) if p.status is Status.OK), key=lambda p: p.generation)
    parent = deepest.parent_ids[0]
    browser.get(site + f"/runs/0/programs/{deepest.id}")
    node = browser.find_element(By.CSS_SELECTOR, f'#lineage a.node[data-id="{parent}"]')
    node.click()
    WebDriverWait(browser, 20).until(ec.url_to_be(site + f"/runs/0/programs/{parent}"))
    assert _text(browser, "h1").endswith(f"program #{parent}")
    root = browser.find_element(By.CSS_SELECTOR, '#lineage a.node[data-id="0"]')
    root.click()
    WebDriverWait(browser, 20).until(ec.url_to_be(site + "/runs/0/programs/0"))
    assert "none (initial program)" in _text(browser, "#parents")


def test_a_live_update_arrives_while_the_run_is_written(
        browser: Any, site: str, shots: Path, hostile_run: tuple[Path, list[int]]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    run, _ = hostile_run
    browser.get(site + "/runs/0")
    before = int(_text(browser, "#done"))
    WebDriverWait(browser, 20).until(
        lambda d: d.find_element(By.ID, "live").get_attribute("data-state") == "on")
    browser.execute_script("window.stillThisPage = true")  # gone if the page reloads
    pid = append_program(run, score=1000.0)
    WebDriverWait(browser, 20).until(  # read in one script: the part may be swapped meanwhile
        lambda d: d.execute_script("return document.getElementById('done').textContent")
        == str(before + 1))
    assert _text(browser, "#best").startswith(f"1000 (#{pid})")
    assert browser.execute_script("return window.stillThisPage") is True  # no reload
    browser.save_screenshot(str(shots / "overview-live.png"))


def test_hostile_text_runs_nothing(browser: Any, site: str, listener: _Listener, shots: Path,
                                   hostile_run: tuple[Path, list[int]]) -> None:
    import urllib.request

    from selenium.webdriver.common.by import By

    run, ids = hostile_run
    with urllib.request.urlopen(listener.url + "/control") as r:  # the listener does listen
        assert r.status == 204
    assert listener.hits == ["/control"]
    listener.hits.clear()
    for pid, payload in zip(ids, _payloads(listener.url), strict=True):
        browser.get(site + f"/runs/0/programs/{pid}")
        _assert_inert(browser, f"#{pid} · run")
        assert payload in _text(browser, "#code")  # shown literally, as text
        assert _text(browser, "#reason") == f"stderr: {payload}"
        assert payload in _text(browser, "#metrics") and payload in _text(browser, "#mutation")
    browser.save_screenshot(str(shots / "program-hostile.png"))
    for path, title in (("/runs/0/programs?sort=recent", "programs · run"),
                        ("/runs/0", "run · evoforge"), ("/runs/0/grid", "grid · run"),
                        ("/", "evoforge dashboard")):
        browser.get(site + path)
        _assert_inert(browser, title)
    rows = browser.find_elements(By.CSS_SELECTOR, "#runs tbody tr")
    assert rows
    # a round trip through the server after every page: anything a payload sent has arrived
    browser.get(site + "/api/runs")
    assert listener.hits == []
