"""Headless Chromium for the UI tests (Debian's ``chromium`` + ``chromium-driver``, driven by Selenium).

A missing browser is a failure, never a skip: ``apt-get install chromium chromium-driver``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
#: docs/img when MLOPS_UPDATE_SCREENSHOTS=1 (to refresh docs/ui.md's pictures); otherwise a temporary
#: folder, so a plain `make test` leaves the checkout unchanged.
SHOTS = (ROOT / "docs" / "img" if os.environ.get("MLOPS_UPDATE_SCREENSHOTS") == "1"
         else Path(tempfile.gettempdir()) / "mlops-screenshots")


def start_chromium() -> Any:
    """A headless Chromium WebDriver (1440x1000); raises AssertionError naming the packages when missing."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        raise AssertionError(
            "headless Chromium is needed for the UI tests: apt-get install chromium chromium-driver "
            f"(found browser={chromium}, driver={driver_path})"
        )
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1440,1000",
                "--disable-gpu", "--hide-scrollbars"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_path))
    driver.set_page_load_timeout(120)
    return driver


def wait(predicate: Any, timeout: float = 60, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as err:  # noqa: BLE001 - the page is still loading
            last = err
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}: {last}")


def shot(driver: Any, name: str) -> Path:
    """Save a screenshot as <SHOTS>/<name>.png (docs/img with MLOPS_UPDATE_SCREENSHOTS=1: docs/ui.md shows them)."""
    import io

    from PIL import Image

    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    image = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    # a 128-colour palette keeps the committed PNGs small (text and flat colours survive it)
    image.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    return path


def http_get(url: str, token: str | None) -> tuple[int, str, str]:
    """(status, content type, body) of a GET, with a bearer token when given; HTTP errors are answers too."""
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, resp.headers.get("content-type", ""), resp.read().decode(errors="replace")
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("content-type", ""), err.read().decode(errors="replace")


def login(driver: Any, url: str, username: str, password: str) -> None:
    """Sign in through Airflow's login form (simple auth manager); waits for the session cookie."""
    from selenium.webdriver.common.by import By

    driver.get(f"{url}/")
    wait(lambda: driver.find_element(By.NAME, "username"), what="the login form").send_keys(username)
    driver.find_element(By.NAME, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait(lambda: driver.get_cookie("_token"), what="the session cookie after login")
