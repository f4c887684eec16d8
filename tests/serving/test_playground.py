"""The playground page in a real headless browser (Debian's Chromium through selenium): it loads with a
slider per objective, a moved slider renormalises λ, a prompt streams an answer with its routing, and
compare mode answers one prompt under two preferences side by side. The last screenshot is kept for the
README when HOE_PLAYGROUND_SCREENSHOT names a file."""

from __future__ import annotations

import os
import shutil

import pytest
from serving_helpers import Running

CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMEDRIVER is None, reason="no chromedriver: `make browser` installs Debian's chromium and chromium-driver"
)


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,800"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def page(tiny_hoe_model):
    running = Running(tiny_hoe_model)
    yield running
    running.stop()


def _wait(driver, condition, seconds: float = 30):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, seconds).until(lambda d: condition(d))


def _answers(driver) -> list:
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, ".turn.assistant")


def test_the_playground_streams_an_answer_under_the_sliders_preference(browser, page):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get(page.url + "/")
    sliders = _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "input[type=range]"))
    assert [s.get_attribute("data-objective") for s in sliders] == ["helpful", "harmless"]
    lambda_text = browser.find_element(By.CSS_SELECTOR, ".lambda")
    assert lambda_text.text == "λ = (0.50, 0.50)"
    sliders[0].click()
    sliders[0].send_keys(*[Keys.ARROW_RIGHT] * 30)  # helpful 50 → 80 of 100: λ = 80 / 130
    _wait(browser, lambda d: lambda_text.text == "λ = (0.62, 0.38)")

    browser.find_element(By.ID, "max_tokens").clear()
    browser.find_element(By.ID, "max_tokens").send_keys("12")
    browser.find_element(By.ID, "prompt").send_keys("Tell me about the sea")
    browser.find_element(By.ID, "send").click()
    _wait(browser, lambda d: _answers(d) and _answers(d)[0].get_attribute("data-state") == "done")
    answer = _answers(browser)[0]
    assert answer.text and "error" not in answer.get_attribute("class"), answer.text
    routing = browser.find_element(By.CSS_SELECTOR, ".routing").text
    assert routing.startswith("routed: ") and "helpful" in routing, routing


def test_compare_mode_answers_one_prompt_under_several_preferences(browser, page):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.get(page.url + "/")
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "input[type=range]"))
    browser.find_element(By.ID, "compare").click()
    Select(browser.find_element(By.ID, "columns")).select_by_visible_text("3")
    panels = _wait(
        browser,
        lambda d: len(d.find_elements(By.CSS_SELECTOR, ".panel")) == 3 and d.find_elements(By.CSS_SELECTOR, ".panel"),
    )
    shown = [p.find_element(By.CSS_SELECTOR, ".lambda").text for p in panels]
    assert shown == ["λ = (0.80, 0.20)", "λ = (0.50, 0.50)", "λ = (0.20, 0.80)"]
    browser.find_element(By.ID, "max_tokens").clear()
    browser.find_element(By.ID, "max_tokens").send_keys("10")
    browser.find_element(By.ID, "prompt").send_keys("How do I bake bread?")
    browser.find_element(By.ID, "send").click()
    _wait(
        browser, lambda d: len(_answers(d)) == 3 and all(a.get_attribute("data-state") == "done" for a in _answers(d))
    )
    routings = [r.text for r in browser.find_elements(By.CSS_SELECTOR, ".routing")]
    assert len(routings) == 3 and len(set(routings)) == 3 and all(r.startswith("routed: ") for r in routings)
    target = os.environ.get("HOE_PLAYGROUND_SCREENSHOT")
    if target:
        browser.save_screenshot(target)
