"""`snakemake --report` on the smoke workflow: one HTML file with every table and figure under
its experiment's category, each with its caption; and the page renders in a real browser
(headless Chromium driven by Selenium: the app starts, a category opens, a figure shows)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT, snakemake_command, snakemake_env

CATEGORIES = ("1. Theorem 1", "2. Method comparison", "3. Digits", "4. Text-to-image")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def report(smoke_workflow) -> Path:
    cmd = snakemake_command(
        "--configfile",
        str(ROOT / "config" / "smoke.yaml"),
        "--config",
        "results_dir=results",
        "--report",
        "report.html",
    )
    out = subprocess.run(
        cmd, cwd=smoke_workflow, env=snakemake_env(), capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return smoke_workflow / "report.html"


def test_report_holds_every_result_with_its_caption(report):
    html = report.read_text()
    for category in CATEGORIES:
        assert category in html, category
    # the captions (rendered from workflow/report/*.rst, wildcards filled in)
    for phrase in (
        "Theorem 1 on",
        "gmm1d_linear",
        "Mean reward against distance to the base",
        "The digits benchmark",
        "Text-to-image: image metrics",
        "How to read it",
    ):
        assert phrase in html, phrase
    # the global description
    assert "noise floor" in html


def _browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    for path, what in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromedriver")):
        if not os.access(path, os.X_OK):
            pytest.skip(f"{what} not found (Debian: apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # headless, as root, on a closed network: no sandbox, no GPU, no background connections
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1400,1000",
    ):
        options.add_argument(flag)
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER)
    return webdriver.Chrome(options=options, service=service)


def test_report_renders_in_a_browser(report, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = _browser()
    try:
        driver.get(report.as_uri())
        wait = WebDriverWait(driver, 30)
        # the React app rendered its menu with one entry per category
        menu = wait.until(lambda d: d.find_elements(By.XPATH, "//a[contains(., '1. Theorem 1')]"))
        for category in CATEGORIES[1:]:
            assert driver.find_elements(By.XPATH, f"//a[contains(., '{category}')]"), category
        menu[0].click()
        # the category's results table: one row per result (its labels), each with a view button
        rows = wait.until(lambda d: d.find_elements(By.XPATH, "//tr[contains(., 'gmm1d_linear')]"))
        assert "Figure 2" in rows[0].text
        # open that figure: the image is decoded (natural width > 0) and on screen
        rows[0].find_element(By.CSS_SELECTOR, "a[iconname='eye']").click()
        image = wait.until(
            lambda d: [
                i
                for i in d.find_elements(By.TAG_NAME, "img")
                if d.execute_script("return arguments[0].naturalWidth", i) > 100
            ]
        )[0]
        assert image.is_displayed()
        shot = tmp_path / "report.png"
        driver.save_screenshot(str(shot))
        if os.environ.get("AM_REPORT_SCREENSHOT"):  # keep the picture for a person to look at
            shutil.copy(shot, os.environ["AM_REPORT_SCREENSHOT"])
    finally:
        driver.quit()
    # the screenshot is a rendered page with the figure, not a blank or error page
    from PIL import Image

    pixels = Image.open(shot).convert("RGB")
    assert pixels.size == (1400, 1000) or pixels.size[0] >= 1000
    assert len(pixels.getcolors(maxcolors=1 << 20)) > 500
