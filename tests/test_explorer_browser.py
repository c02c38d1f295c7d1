"""The explorer page (net/explorer) in a real headless Chromium driven by Selenium, against a
real node that ran the ML training example, a committed revert and a hostile contract
(tests/explorer_scenario.py).  Each page is loaded and its content checked against the RPC.

Screenshots (PNG) of every page are kept as test artefacts in $GRADCHAIN_ARTIFACTS/explorer
(default: this module's pytest tmp dir, printed in the log).  Needs Debian's chromium and
chromium-driver (`apt-get install chromium chromium-driver`); skips, saying so, without them.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from gradchain import devnet_keys
from tests import explorer_scenario as sc
from tests.nodeproc import NodeProcess

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed: pip install -e '.[test]'")
if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
    pytest.skip("needs Debian's chromium and chromium-driver: apt-get install -y chromium chromium-driver",
                allow_module_level=True)
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

WAIT = 10


def chromium() -> "webdriver.Chrome":
    """Headless Chromium through the system chromedriver (never a downloaded browser)."""
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              "--window-size=1280,1000", "--no-first-run", "--disable-extensions"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=opts)


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory) -> Path:
    base = os.environ.get("GRADCHAIN_ARTIFACTS")
    out = (Path(base) if base else tmp_path_factory.mktemp("artefacts")) / "explorer"
    out.mkdir(parents=True, exist_ok=True)
    print(f"explorer screenshots in {out}")
    return out


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    node = NodeProcess(tmp_path_factory.mktemp("explorer_browser") / "node", block_time=0.2).start()
    with node.client() as c:
        scenario = sc.build(c)
    yield node, scenario
    node.kill()


@pytest.fixture(scope="module")
def browser(chain):
    d = chromium()
    yield d
    d.quit()


def visit(browser, node, route: str, shots: Path, name: str) -> None:
    """Open #/route and wait until the script says the page is drawn (body[data-ready])."""
    browser.get(f"{node.url}/explorer#/{route}")
    browser.refresh()  # a hash change alone does not reload: start each page clean
    WebDriverWait(browser, WAIT).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))
    browser.save_screenshot(str(shots / f"{name}.png"))
    assert browser.find_element(By.TAG_NAME, "body").get_attribute("data-ready") != "error", \
        browser.find_element(By.ID, "app").text
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors


def text(browser, by_id: str) -> str:
    return browser.find_element(By.ID, by_id).text


def test_home_lists_latest_blocks_and_grows_live(chain, browser, artefacts):
    node, s = chain
    visit(browser, node, "", artefacts, "home")
    rows = browser.find_elements(By.CSS_SELECTOR, "#latest-blocks tbody tr")
    assert len(rows) == 10
    top = int(rows[0].get_attribute("data-height"))
    with node.client() as c:
        assert c.block(top)["header"]["hash"][:10] in rows[0].text
        WebDriverWait(browser, WAIT).until(lambda d: text(d, "live") == "live")
        r = c.transfer(devnet_keys()[3], devnet_keys()[4].address, 12345)
    tx = r["hash"] if isinstance(r, dict) else r
    WebDriverWait(browser, WAIT).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, f'#latest-txs tr[data-hash="{tx}"]'))
    newest = int(browser.find_elements(By.CSS_SELECTOR, "#latest-blocks tbody tr")[0].get_attribute("data-height"))
    assert newest > top
    assert len(browser.find_elements(By.CSS_SELECTOR, "#latest-blocks tbody tr")) == 10  # the list stays bounded
    browser.save_screenshot(str(artefacts / "home-live.png"))


def test_block_page_shows_its_hash(chain, browser, artefacts):
    node, s = chain
    with node.client() as c:
        want = c.block(3)["header"]["hash"]
    visit(browser, node, "block/3", artefacts, "block")
    assert text(browser, "block-hash") == want
    visit(browser, node, f"block/{want}", artefacts, "block-by-hash")
    assert text(browser, "block-hash") == want


def test_failed_tx_shows_reason_function_and_line(chain, browser, artefacts):
    node, s = chain
    visit(browser, node, f"tx/{s.failed_tx}", artefacts, "tx-reverted")
    assert text(browser, "tx-status") == "failed"
    assert text(browser, "revert-reason") == s.failed_reason
    where = text(browser, "revert-where")
    assert "revert in require_trainer()" in where and f"line {s.failed_line}" in where


def test_hostile_strings_show_as_text(chain, browser, artefacts):
    node, s = chain
    visit(browser, node, f"tx/{s.hostile_tx}", artefacts, "tx-hostile")
    assert text(browser, "revert-reason") == sc.HOSTILE_REASON
    visit(browser, node, f"account/{s.hostile}", artefacts, "contract-hostile")
    assert sc.HOSTILE_LABEL in browser.find_element(By.ID, "contract-events").text
    browser.find_element(By.CSS_SELECTOR, 'form[data-function="label"] button').click()
    WebDriverWait(browser, WAIT).until(lambda d: "pwn-label" in d.find_element(
        By.CSS_SELECTOR, 'form[data-function="label"] + .out').text)
    assert not browser.find_elements(By.ID, "pwn-label") and not browser.find_elements(By.ID, "pwn-reason")
    assert browser.title == "gradchain explorer"  # no injected handler ran


def test_contract_page_source_storage_and_call(chain, browser, artefacts):
    node, s = chain
    visit(browser, node, f"account/{s.training}", artefacts, "contract")
    source = (sc.ROOT / "examples" / "ml_training.py").read_text()
    assert len(browser.find_elements(By.CSS_SELECTOR, "#source li")) == len(source.split("\n"))
    box = browser.find_element(By.ID, "storage-key")
    box.send_keys('"steps"')
    box.submit()
    WebDriverWait(browser, WAIT).until(lambda d: text(d, "storage-value") == str(s.steps))
    browser.find_element(By.CSS_SELECTOR, 'form[data-function="last_loss"] button').click()
    with node.client() as c:
        last = c.call("call", {"contract": s.training, "function": "last_loss"})["result"]
    WebDriverWait(browser, WAIT).until(lambda d: last in d.find_element(
        By.CSS_SELECTOR, 'form[data-function="last_loss"] + .out').text)
    assert "Trained" in text(browser, "contract-events")


def test_loss_chart_has_one_point_per_recorded_step(chain, browser, artefacts):
    node, s = chain
    visit(browser, node, f"ml/{s.training}", artefacts, "ml-loss")
    assert "softmax" in text(browser, "models")
    points = browser.find_elements(By.CSS_SELECTOR, 'svg[data-series="loss"] circle.pt')
    with node.client() as c:
        stored = [c.call("storage", {"contract": s.training, "key": {"tuple": ["loss", i]}})["value"]
                  for i in range(s.steps + 1)]
    assert stored[-1] is None and None not in stored[:-1]  # exactly s.steps losses in storage
    assert [(int(p.get_attribute("data-step")), p.get_attribute("data-value")) for p in points] == \
        list(enumerate(stored[:-1]))


def test_validators_and_jobs_pages(chain, browser, artefacts):
    node, s = chain
    visit(browser, node, "validators", artefacts, "validators")
    with node.client() as c:
        vs = c.call("validators", {})
    rows = browser.find_elements(By.CSS_SELECTOR, "#validators tbody tr")
    assert len(rows) == len(vs["validators"]) == 1
    assert vs["validators"][0]["address"] in rows[0].text
    assert browser.find_elements(By.CSS_SELECTOR, "#rotation tbody tr")
    visit(browser, node, "jobs", artefacts, "jobs")
    assert "0 job(s) posted" in browser.find_element(By.ID, "app").text
