"""The path picture in the thread and the web UI, checked in a real browser (Debian's headless Chromium
driven by Selenium), on the lab: one lab, one `kubereach serve --web-ui` process (history on SQLite)
and one browser for the module.

A question asked through a signed Slack request (`kubereach lab slack send`) with a veth down on one
source pod's node gets a verdict whose thread carries the path picture (a PNG stored by the Slack
stand-in) and a signed link; the link opens the investigation page with the verdict and the picture
marking the hop; search finds it; the trends page draws its charts; an expired, a forged and a
missing token show nothing, and so does a page of a namespace the token does not cover (a token
issued by the product for another channel). Screenshots go to a tmp dir and to $KUBEREACH_ARTIFACTS
when set.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from bot.web.tokens import LinkSigner, derived_key
from lab.slackstub.control import RemoteWorkspace
from tests.lab.labkit import KUBEREACH, REPO, Lab, running_lab, unique_prefix
from tests.lab.test_serve_process import Serve, lab_slack
from tests.polling import eventually

pytestmark = [pytest.mark.lab]
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SHOP_CHANNEL = "CSHOPTEAM"
INCIDENT_CHANNEL = "CINCIDENTS"
LINK = re.compile(r"<(http://[^|>]+/ui/i/[^|>]+)\|")


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with running_lab(unique_prefix("wb")) as lab:
        yield lab


@pytest.fixture(scope="module")
def config(lab: Lab) -> dict[str, str]:
    text = Path(lab.status["config"]).read_text()
    found = {key: re.search(rf"^{key}: (\S+)$", text, re.M) for key in ("slack_bot_token", "slack_signing_secret")}
    return {key: match.group(1) for key, match in found.items() if match is not None}


@pytest.fixture(scope="module")
def serve(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    where = tmp_path_factory.mktemp("web-serve")
    process = Serve(lab.status["config"], f"sqlite:///{where / 'history.db'}", where / "serve.log", "--web-ui")
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def slack(lab: Lab, config: dict[str, str]) -> RemoteWorkspace:
    return RemoteWorkspace(lab.status["slack"]["control"], config["slack_bot_token"])


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1600,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.set_page_load_timeout(60)
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


def screenshot(browser: webdriver.Chrome, shots: Path, name: str) -> Path:
    """Save the whole page (as tall as it is) under `shots` and, when set, $KUBEREACH_ARTIFACTS."""
    browser.set_window_size(1600, 600)
    height = int(browser.execute_script("return document.documentElement.scrollHeight"))  # type: ignore[no-untyped-call]
    browser.set_window_size(1600, min(max(height, 600), 4000))
    path = shots / f"{name}.png"
    browser.save_screenshot(str(path))
    artifacts = os.environ.get("KUBEREACH_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(artifacts) / path.name)
    return path


def ask(lab: Lab, serve: Serve, slack: RemoteWorkspace, channel: str, text: str) -> tuple[list[dict[str, Any]], str]:
    """Send `/reach TEXT` in `channel`; the finished thread and the link its verdict carries."""
    before = {m["ts"] for m in slack.messages(channel)}
    answer = lab_slack(lab, "send", "--to", serve.url, "--channel", channel, f"/reach {text}")
    assert answer["status"] == 200, answer

    def finished() -> tuple[list[dict[str, Any]], str] | None:
        for message in slack.messages(channel):
            if message["ts"] in before or message.get("ephemeral"):
                continue
            found = LINK.search(json.dumps(message.get("blocks") or []))
            if found:
                thread = slack.messages(channel, message.get("thread_ts") or message["ts"])
                return thread, found.group(1)
        return None

    return eventually(finished, deadline_s=180, what=f"a verdict with a link in {channel}")


def token_of(url: str) -> str:
    return urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["t"][0]


def with_token(url: str, token: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode({"t": token})))


def nothing_shown(browser: webdriver.Chrome) -> bool:
    return bool(browser.find_elements(By.ID, "nothing")) and not browser.find_elements(By.ID, "verdict")


def test_thread_picture_page_search_trends_and_refusals_in_a_browser(
    lab: Lab, serve: Serve, slack: RemoteWorkspace, browser: webdriver.Chrome, shots: Path, config: dict[str, str]
) -> None:
    lab.cli("fault", "veth-down")
    try:
        thread, link = ask(lab, serve, slack, SHOP_CHANNEL, "why can't frontend reach api")
    finally:
        lab.cli("heal")
    # The picture is in the thread: a PNG the stand-in stored, of a sane size.

    def picture() -> dict[str, Any] | None:
        found = [f for m in slack.messages(SHOP_CHANNEL, thread[0]["ts"]) for f in m.get("files") or []]
        return next((f for f in found if f["name"].endswith("-path.png")), None)

    shared = eventually(picture, deadline_s=60, what="the path picture in the thread")
    png = base64.b64decode(shared["content_base64"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and 10_000 < shared["size"] < 1_000_000
    assert "POD_INTERFACE_DOWN" in shared["alt_txt"]

    # The link opens the page: the verdict, and the picture with the hop marked.
    browser.get(link)
    verdict = browser.find_element(By.ID, "verdict").text
    assert "POD_INTERFACE_DOWN" in verdict, verdict
    assert "source-pod" in verdict, verdict
    marked = browser.find_elements(By.CSS_SELECTOR, "#picture g[data-marked='true']")
    assert [m.get_attribute("data-key") for m in marked] == ["veth"]
    assert browser.find_elements(By.CSS_SELECTOR, "#steps tr")
    assert browser.find_element(By.ID, "runs").text
    screenshot(browser, shots, "investigation")
    headers = _headers(link)
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["referrer-policy"] == "no-referrer" and headers["cache-control"] == "no-store"
    assert headers["x-content-type-options"] == "nosniff"

    # Search with the same token finds it; the trends page draws its charts.
    token = token_of(link)
    investigation_id = urllib.parse.urlsplit(link).path.rsplit("/", 1)[-1]
    origin = link.split("/ui/", 1)[0]
    browser.get(f"{origin}/ui/search?" + urllib.parse.urlencode({"t": token, "q": "frontend", "since": "1d"}))
    assert investigation_id in browser.find_element(By.ID, "hits").text
    screenshot(browser, shots, "search")
    browser.get(f"{origin}/ui/digest?" + urllib.parse.urlencode({"t": token}))
    assert browser.find_elements(By.CSS_SELECTOR, "#weeks svg rect.bar")
    assert browser.find_elements(By.CSS_SELECTOR, "#conntrack svg polyline.fill")
    screenshot(browser, shots, "trends")

    # Expired, forged and missing tokens show nothing, on every page.
    expired = LinkSigner(derived_key(config["slack_signing_secret"]), 60, clock=lambda: 1_000_000.0).issue(SHOP_CHANNEL, None)
    head, mac = token.split(".")
    forged = f"{head}.{mac[:-2]}{'AA' if mac[-2:] != 'AA' else 'BB'}"
    for bad in (expired, forged, ""):
        for page in (link, f"{origin}/ui/search?q=frontend", f"{origin}/ui/digest"):
            browser.get(with_token(page, bad) if bad else page.split("?")[0])
            assert nothing_shown(browser), (page, bad[:8])
    screenshot(browser, shots, "no-access")

    # A question about another namespace, asked where every namespace is allowed, is not shown to the
    # shop channel's link.
    _, other_link = ask(lab, serve, slack, INCIDENT_CHANNEL, "why can't frontend in shop reach coredns in kube-system")
    browser.get(with_token(other_link, token))
    assert nothing_shown(browser)
    browser.get(other_link)
    assert browser.find_elements(By.ID, "verdict")
    browser.get(f"{origin}/ui/search?" + urllib.parse.urlencode({"t": token, "q": "coredns"}))
    assert other_link.split("?")[0].rsplit("/", 1)[-1] not in browser.find_element(By.TAG_NAME, "body").text

    # No token ever reaches the log.
    log = serve.text()
    assert token not in log and token_of(other_link) not in log


def _headers(url: str) -> dict[str, str]:
    with urllib.request.urlopen(url, timeout=30) as answer:
        return {k.lower(): v for k, v in answer.headers.items()}


def test_ask_picture_writes_the_png_and_prints_its_path(lab: Lab, tmp_path: Path) -> None:
    target = tmp_path / "path.png"
    asking = [*KUBEREACH, "--config", lab.status["config"], "ask", "--no-history"]
    proc = subprocess.run(
        [*asking, "--picture", str(target), "why can't frontend reach api"],
        capture_output=True, text=True, cwd=REPO, timeout=180, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"picture: {target}" in proc.stdout
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = tmp_path / "path.svg"
    proc = subprocess.run(
        [*asking, "--json", "--picture", str(svg), "why can't frontend reach api"],
        capture_output=True, text=True, cwd=REPO, timeout=180, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["verdict"]["code"] == "NO_FAULT_FOUND"
    assert f"picture: {svg}" in proc.stderr
    assert svg.read_text().startswith("<svg") and 'data-verdict="NO_FAULT_FOUND"' in svg.read_text()
