"""The README's picture of the playground: `hoe serve` on a bundle, the page in headless Chromium, one
prompt answered under three preferences side by side (compare mode), saved as a PNG.

    .venv/bin/python benchmarks/serving/screenshot.py --bundle runs/demo/2-objectives/bundle \
        --prompt "How can I get my neighbour's dog to stop barking?" --out benchmarks/serving/playground.png
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from run import start_server
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default="runs/demo/2-objectives/bundle")
    parser.add_argument("--prompt", default="How can I get my neighbour's dog to stop barking?")
    parser.add_argument("--max-tokens", type=int, default=60)
    parser.add_argument("--out", type=Path, default=HERE / "playground.png")
    args = parser.parse_args()

    from hoe.model.hoe_model import HoEModel

    server = start_server(HoEModel.from_bundle(args.bundle).eval(), max_batch=16)
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        driver.get(server.url + "/")
        wait = WebDriverWait(driver, 60)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "input[type=range]"))
        driver.find_element(By.ID, "compare").click()
        Select(driver.find_element(By.ID, "columns")).select_by_visible_text("3")
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".panel")) == 3)
        driver.find_element(By.ID, "max_tokens").clear()
        driver.find_element(By.ID, "max_tokens").send_keys(str(args.max_tokens))
        driver.find_element(By.ID, "prompt").send_keys(args.prompt)
        driver.find_element(By.ID, "send").click()
        answers = (By.CSS_SELECTOR, ".turn.assistant")
        WebDriverWait(driver, 600).until(
            lambda d: (
                len(d.find_elements(*answers)) == 3
                and all(a.get_attribute("data-state") == "done" for a in d.find_elements(*answers))
            )
        )
        time.sleep(0.5)
        driver.save_screenshot(str(args.out))
        print(args.out)
    finally:
        driver.quit()
        server.stop()


if __name__ == "__main__":
    main()
