"""The panel's page in a real headless Chromium (Selenium): each control changes the live run."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest
from panelrun import TOKEN, PanelRun, region_change, still_clip

INSTALL = "apt-get install chromium chromium-driver and pip install selenium (make setup does both where it can)"
BROWSER = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
DRIVER = shutil.which("chromedriver")
try:
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select, WebDriverWait
except ImportError:
    webdriver = None

pytestmark = pytest.mark.skipif(webdriver is None or BROWSER is None or DRIVER is None,
                                reason=f"no headless Chromium with Selenium here: {INSTALL}")


@pytest.fixture
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = BROWSER
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=420,1200"):
        options.add_argument(arg)
    try:
        driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    except WebDriverException as exc:
        pytest.skip(f"Chromium did not start ({str(exc).splitlines()[0]}); {INSTALL}")
    yield driver
    driver.quit()


def state_of(run: PanelRun) -> dict:
    """STATE over the API, as any client sees it."""
    import aiohttp

    async def go() -> dict:
        async with aiohttp.ClientSession() as session, session.ws_connect(run.ws_url) as ws:
            await ws.send_str(json.dumps({"id": 1, "get": "state"}))
            while (doc := await ws.receive_json()).get("type") == "stats":
                pass
            return doc["state"]

    return asyncio.run(go())


def test_the_page_drives_the_run(browser, tmp_path):
    run = PanelRun(still_clip(tmp_path / "still.mp4"), tmp_path / "config")
    try:
        boxes = run.wait_for_faces(2)
        original = run.runner.view.image.copy()
        styled = run.recorder.next_frames(3)
        browser.get(f"{run.base}/?token={TOKEN}")
        wait = WebDriverWait(browser, 60)
        slider = wait.until(lambda d: d.find_element(By.ID, "p-style-strength"))
        wait.until(lambda d: d.find_element(By.ID, "status").text == "connected")

        # The strength slider, moved with the keyboard as a user would: to 0, the face is the input.
        slider.send_keys(Keys.HOME)
        wait.until(lambda d: state_of(run)["params"]["style"]["strength"] == 0.0)
        assert all(region_change(run.recorder.next_frames(3), original, box) < 1.5 for box in boxes.values())
        slider.send_keys(Keys.END)
        wait.until(lambda d: state_of(run)["params"]["style"]["strength"] == 1.0)

        # Another style, chosen by its name in the menu.
        menu = Select(browser.find_element(By.ID, "p-style-style"))
        name = menu.options[7].text
        menu.select_by_visible_text(name)
        chosen = menu.options[7].get_attribute("value")
        wait.until(lambda d: str(state_of(run)["params"]["style"]["style"]) == chosen)
        restyled = run.recorder.next_frames(3)
        assert all(region_change(restyled, styled[-1], box) > 8 for box in boxes.values())
        # The preview window's keys work on the page too: n is the next style, p the previous.
        values = [option.get_attribute("value") for option in menu.options]
        browser.find_element(By.TAG_NAME, "body").send_keys("n")
        wait.until(lambda d: str(state_of(run)["params"]["style"]["style"]) == values[8])
        browser.find_element(By.TAG_NAME, "body").send_keys("p")
        wait.until(lambda d: str(state_of(run)["params"]["style"]["style"]) == values[7])

        # Face 1 gets a chain of its own.
        face = wait.until(lambda d: d.find_element(By.ID, "face-chain-1"))
        Select(face).select_by_value("tint")
        wait.until(lambda d: state_of(run)["faces"] == {"1": "tint"})
        tinted = run.recorder.next_frames(3)
        assert region_change(tinted, original, boxes[1]) < 0.5 * region_change(restyled, original, boxes[1])
        assert region_change(tinted, restyled[-1], boxes[0]) < 3

        wait.until(lambda d: d.find_element(By.ID, "fig-faces").text == "2")
        assert browser.find_element(By.ID, "message").get_attribute("class") == "message"  # no error shown
        browser.save_screenshot(str(tmp_path / "panel.png"))
    finally:
        run.stop()
    assert not run.runner.stats.end_reason or run.runner.stats.end_reason == "quit"
    assert Path(tmp_path / "panel.png").stat().st_size > 0
