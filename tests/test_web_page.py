"""The web pages (issue 14, items 3 and 4): server-rendered user and model pages, their empty and error states, and
the same pages driven in headless Chromium (Debian's ``chromium`` + ``chromium-driver``, through Selenium) against
a live service, at phone width, with PNG screenshots and no console errors.

The browser tests are skipped, saying so, only where Chromium or its driver is not installed (.ci/run installs both).
Screenshots go to ``$GRAPHREC_TEST_ARTIFACTS`` or ``test-artifacts/web/`` in the repository.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from graphrec.settings import REPO_ROOT
from graphrec.testing import free_port, wait_until
from serving.app import create_app
from serving.features import StoreUnavailable
from tests.support.explained import ExplainedWorld, explained_world

PHONE = (390, 844)
DESKTOP = (1280, 900)
K = 10
UNKNOWN_USER = 987654321


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, single_thread: None) -> ExplainedWorld:
    """KCAN @champion and BPR-MF @challenger, promoted through the gate with reasons (an audit trail to show)."""
    return explained_world(tmp_path_factory.mktemp("web"))


@pytest.fixture(scope="module")
def client(world: ExplainedWorld) -> Iterator[TestClient]:
    """The app on the world, without the poller."""
    with TestClient(create_app(world.settings, poll=False), raise_server_exceptions=False) as test_client:
        yield test_client


def test_user_page_lists_k_items_with_names_and_reasons(client: TestClient, world: ExplainedWorld) -> None:
    page = client.get("/ui/user", params={"user_id": 4, "k": K})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert html.count('class="item"') == K
    assert html.count('class="reason"') >= K  # every KCAN item has reasons
    assert f"v{world.kcan_version}" in html and "champion" in html
    assert 'id="tercile"' in html and any(t in html for t in ("sparse", "medium", "active"))
    assert "score drops when that neighbour is removed" in html


def test_user_page_states(client: TestClient) -> None:
    empty = client.get("/ui/user")
    assert empty.status_code == 200 and 'id="empty"' in empty.text
    assert client.get("/ui", follow_redirects=False).headers["location"] == "/ui/user"
    unknown = client.get("/ui/user", params={"user_id": UNKNOWN_USER})
    assert unknown.status_code == 200 and 'id="fallback"' in unknown.text and "popularity fallback" in unknown.text
    bad = client.get("/ui/user", params={"user_id": "<script>alert(1)</script>"})
    assert bad.status_code == 400 and 'id="error"' in bad.text
    assert "<script>alert" not in bad.text  # typed text is escaped, never run


def test_user_page_says_when_the_store_is_down(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    reader = client.app.state.service.reader

    def down(*args: object, **kwargs: object) -> None:
        raise StoreUnavailable("online store file /x/online.db does not exist")

    monkeypatch.setattr(reader, "user_rows", down)
    monkeypatch.setattr(reader, "user_row", down)
    page = client.get("/ui/user", params={"user_id": 4})
    assert page.status_code == 503 and "feature store is unavailable" in page.text


def test_challenger_page_explains_with_seen_items(client: TestClient, world: ExplainedWorld) -> None:
    page = client.get("/ui/user", params={"user_id": 4, "k": 5, "variant": "challenger"})
    assert page.status_code == 200
    assert f"v{world.bpr_version}" in page.text and "challenger" in page.text
    assert "similarity" in page.text and "a similarity, not a share of the score" in page.text


def test_model_page_shows_versions_metrics_features_and_audit(client: TestClient, world: ExplainedWorld) -> None:
    page = client.get("/ui/model")
    assert page.status_code == 200
    html = page.text
    for version in (world.kcan_version, world.bpr_version):
        assert f'id="version-{version}"' in html
    assert "kcan_nbr_id" in html and "embedding" in html  # the features each version reads
    assert "_seen" in html and "auc" in html and "sparse" in html
    assert 'id="audit"' in html and "explanation tests: KCAN first" in html and "force" in html


# --- in a real browser -------------------------------------------------------------------------------------------


def browser_binaries() -> tuple[str, str]:
    """Paths of Debian's chromium and chromedriver; skips the test, saying what is missing, where either is absent."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        pytest.skip(
            "headless browser test skipped: Debian's chromium and chromium-driver are not installed "
            "(apt-get install chromium chromium-driver; .ci/run does)"
        )
    return browser, driver


def artefacts() -> Path:
    """Where the screenshots go."""
    folder = Path(os.environ.get("GRAPHREC_TEST_ARTIFACTS", REPO_ROOT / "test-artifacts")) / "web"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def live_url(world: ExplainedWorld) -> Iterator[str]:
    """The app served by uvicorn on a free loopback port in a thread of this process."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(world.settings, poll=False), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, name="web-test-server", daemon=True)
    thread.start()
    wait_until(lambda: server.started, 60, "the web test server")
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def browser() -> Iterator[object]:
    """Headless Chromium through Selenium, with the browser console log kept."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = browser_binaries()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def console_errors(driver: object) -> list[str]:
    """SEVERE entries of the browser console since the last call."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]  # type: ignore[attr-defined]


def fits_width(driver: object) -> bool:
    """Whether the page needs no horizontal scrolling."""
    return driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1")  # type: ignore[attr-defined]


@pytest.mark.parametrize("size", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_user_page_in_chromium(browser: object, live_url: str, world: ExplainedWorld, size: tuple[int, int]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    driver.set_window_size(*size)  # type: ignore[attr-defined]
    label = "phone" if size == PHONE else "desktop"
    folder = artefacts()
    driver.get(f"{live_url}/ui/user")  # type: ignore[attr-defined]
    assert driver.find_element(By.ID, "empty").is_displayed()  # type: ignore[attr-defined]
    field = driver.find_element(By.ID, "user_id")  # type: ignore[attr-defined]
    field.send_keys("4")
    driver.find_element(By.ID, "show").click()  # type: ignore[attr-defined]
    WebDriverWait(driver, 30).until(expected_conditions.presence_of_element_located((By.ID, "items")))
    rows = driver.find_elements(By.CSS_SELECTOR, "#items > li.item")  # type: ignore[attr-defined]
    assert len(rows) == K
    for row in rows:
        assert row.find_element(By.CLASS_NAME, "name").text.strip()
        reasons = row.find_elements(By.CLASS_NAME, "reason")
        assert reasons and all(r.text.strip() for r in reasons)
    assert f"v{world.kcan_version}" in driver.find_element(By.ID, "answered-by").text  # type: ignore[attr-defined]
    assert fits_width(driver), f"the user page scrolls sideways at {size[0]} px"
    assert driver.save_screenshot(str(folder / f"user-{label}.png"))  # type: ignore[attr-defined]

    field = driver.find_element(By.ID, "user_id")  # type: ignore[attr-defined]
    field.clear()
    field.send_keys(str(UNKNOWN_USER))
    driver.find_element(By.ID, "show").click()  # type: ignore[attr-defined]
    WebDriverWait(driver, 30).until(expected_conditions.presence_of_element_located((By.ID, "fallback")))
    assert "unknown" in driver.find_element(By.ID, "fallback").text  # type: ignore[attr-defined]
    badges = driver.find_elements(By.CSS_SELECTOR, ".badge.fallback")  # type: ignore[attr-defined]
    assert len(badges) == K
    assert driver.save_screenshot(str(folder / f"unknown-user-{label}.png"))  # type: ignore[attr-defined]

    driver.get(f"{live_url}/ui/model")  # type: ignore[attr-defined]
    assert driver.find_element(By.ID, f"version-{world.kcan_version}").is_displayed()  # type: ignore[attr-defined]
    assert fits_width(driver), f"the model page scrolls sideways at {size[0]} px"
    assert driver.save_screenshot(str(folder / f"model-{label}.png"))  # type: ignore[attr-defined]
    assert console_errors(driver) == []
    for name in (f"user-{label}.png", f"unknown-user-{label}.png", f"model-{label}.png"):
        assert (folder / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
