"""The playground in a real browser: headless Chromium (Debian's chromium + chromium-driver, installed
by .ci/run) driven by Selenium against a real ``python -m bot`` process with no DISCORD_TOKEN.

One browser and one bot process for the whole module; the tests run in file order and build on each
other's videos (Alice makes #1, retries it as #2, ...). Set PLAYGROUND_SCREENSHOTS=docs to refresh the
README's screenshots.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import PASSTHROUGH_ENV, REPO_ROOT

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import TimeoutException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
if not (CHROMIUM and CHROMEDRIVER):
    if os.environ.get("CI"):
        raise RuntimeError(
            "chromium and chromedriver are missing: .ci/run installs them (apt chromium chromium-driver)"
        )
    pytest.skip("no chromium/chromedriver (apt-get install chromium chromium-driver)", allow_module_level=True)

WAIT = 60.0  # generous for a loaded 2-core machine; the README's promise (30 s) is measured in bench/
DAILY = 10
# A model the demo provider hosts with one size only, to see a size refusal name the allowed one.
MODELS_TOML = """
[models.tiny]
name = "Tiny test model"
durations = [4]
sizes = ["1280x720"]
typical_seconds = 3

[[models.tiny.hosts]]
provider = "demo"
model = "tiny"
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    """``python -m bot`` with no DISCORD_TOKEN: the playground, its address in one line."""
    workdir = Path(tempfile.mkdtemp(prefix="playground-"))
    (workdir / "models.toml").write_text(MODELS_TOML)
    env = {k: os.environ[k] for k in PASSTHROUGH_ENV if k in os.environ}
    env.update(
        PYTHONPATH=str(REPO_ROOT),
        PYTHONUNBUFFERED="1",
        HTTP_PORT=str(_free_port()),
        DAILY_CREDITS=str(DAILY),
        COOLDOWN_SECONDS="0",
        MODELS_FILE=str(workdir / "models.toml"),
        DEFAULT_MODEL="demo",
    )
    log = (workdir / "bot.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "bot"], cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = _wait_for_address(proc, workdir / "bot.log")
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_for_address(proc: subprocess.Popen[bytes], log: Path) -> str:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if match := re.search(r"^Playground: (http://127\.0\.0\.1:\d+) \(DISCORD_TOKEN is not set", text, re.M):
            return match[1]
        if proc.poll() is not None:
            raise RuntimeError(f"playground exited with {proc.returncode}:\n{text}")
        time.sleep(0.1)
    raise TimeoutError(f"no 'Playground: http://...' line:\n{log.read_text(errors='replace')}")


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1440,900"):
        options.add_argument(flag)
    options.add_argument("--autoplay-policy=no-user-gesture-required")
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _open(browser: WebDriver, base_url: str, member: str) -> None:
    browser.get(f"{base_url}/?member={member}")
    # Every data-state a card shows, in order, as the live updates arrive.
    browser.execute_script(
        """
        window.seen = {};
        const note = (card) => {
          const list = (window.seen[card.dataset.job] ||= []);
          if (list[list.length - 1] !== card.dataset.state) list.push(card.dataset.state);
        };
        document.querySelectorAll('article[data-job]').forEach(note);
        new MutationObserver((records) => records.forEach((r) => r.addedNodes.forEach((n) => {
          if (n.nodeType === 1 && n.dataset.job) note(n);
        }))).observe(document.getElementById('messages'), { childList: true });
        """
    )


def _wait(browser: WebDriver, what: str, condition: object, timeout: float = WAIT) -> object:
    try:
        return WebDriverWait(browser, timeout, poll_frequency=0.2).until(condition)  # type: ignore[arg-type]
    except TimeoutException:
        raise AssertionError(f"timed out waiting for {what}") from None


# Cards and the panel are replaced as live updates arrive: read them in one script, never through an
# element handle that the next update may have made stale.
def _text(browser: WebDriver, css: str, *, last: bool = False) -> str:
    """The text of the first (or ``last``) element matching ``css``; "" when none does."""
    found = browser.execute_script(
        "const all = document.querySelectorAll(arguments[0]); const e = all[arguments[1] ? all.length - 1 : 0];"
        " return e && e.innerText;",
        css,
        last,
    )
    return str(found or "")


def _count(browser: WebDriver, css: str) -> int:
    return int(browser.execute_script("return document.querySelectorAll(arguments[0]).length;", css))


def _credits(browser: WebDriver) -> int:
    return int(_text(browser, "#credits"))


def _card_state(browser: WebDriver, job_id: int) -> str | None:
    state = browser.execute_script(
        "const e = document.getElementById(arguments[0]); return e && e.dataset.state;", f"job-{job_id}"
    )
    return str(state) if state else None


def _last_reply(browser: WebDriver) -> str:
    return _text(browser, "article.ephemeral p", last=True)


def _send(browser: WebDriver, prompt: str, *, model: str = "demo", duration: str = "", size: str = "") -> None:
    replies = _count(browser, "article.ephemeral")
    browser.find_element(By.ID, "prompt").send_keys(prompt)
    Select(browser.find_element(By.ID, "model")).select_by_value(model)
    Select(browser.find_element(By.ID, "duration")).select_by_value(duration)
    Select(browser.find_element(By.ID, "size")).select_by_value(size)
    browser.find_element(By.ID, "send").click()
    _wait(browser, "the reply", lambda b: _count(b, "article.ephemeral") > replies)


def _shoot(browser: WebDriver, name: str) -> None:
    folder = os.environ.get("PLAYGROUND_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(Path(folder) / name))


def test_a_prompt_becomes_a_video_that_plays_in_the_page(browser: WebDriver, base_url: str) -> None:
    _open(browser, base_url, "alice")
    assert _credits(browser) == DAILY
    _send(browser, "a paper boat drifting down a rainy street")
    assert _last_reply(browser) == "Your video #1 is queued (demo, 4 credits reserved)."
    _wait(browser, "video #1 to finish", lambda b: _card_state(b, 1) == "succeeded")
    seen = browser.execute_script("return window.seen['1'];")
    assert seen[0] in ("queued", "submitting", "running") and seen[-1] == "succeeded", seen
    assert "running" in seen, seen  # the status message moved through the live updates
    assert "✅ Done" in _text(browser, "#job-1 .status")
    # The video element's source loads and plays: its duration is the clip's, and time moves on.
    played = browser.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        const video = document.querySelector('#job-1 video');
        video.muted = true;
        const report = () => done({
          duration: video.duration, time: video.currentTime, error: video.error && video.error.code,
        });
        video.addEventListener('timeupdate', () => { if (video.currentTime > 0.2) report(); });
        video.addEventListener('error', report);
        video.play().catch((e) => done({error: String(e)}));
        """
    )
    assert played.get("error") is None, played
    assert 3.5 < played["duration"] < 4.5, played
    assert played["time"] > 0, played
    _wait(browser, "the charge in the panel", lambda b: _credits(b) == DAILY - 4)
    assert "➖ 4 charged for video #1" in _text(browser, "#panel")
    _shoot(browser, "playground.png")


def test_retry_makes_a_new_video_and_charges_again(browser: WebDriver, base_url: str) -> None:
    browser.find_element(By.CSS_SELECTOR, '#job-1 button[data-action="retry"]').click()
    _wait(browser, "the retry reply", lambda b: "#2 (retry of #1)" in _last_reply(b))
    _wait(browser, "the reservation in the panel", lambda b: _credits(b) == DAILY - 8)
    _wait(browser, "video #2 to finish", lambda b: _card_state(b, 2) == "succeeded")
    assert "Retry of video #1" in _text(browser, "#job-2")
    src = browser.execute_script("return document.querySelector('#job-2 video').src;")
    assert src == f"{base_url}/videos/2.mp4"
    history = _text(browser, "#history")
    assert "#2 succeeded" in history and "#1 succeeded" in history


def test_refusals_are_shown_in_the_page_and_charge_nothing(browser: WebDriver, base_url: str) -> None:
    cards = _count(browser, "article[data-job]")
    _send(browser, "a size the model does not make", model="tiny", size="720x1280")
    assert _last_reply(browser) == "Size 720x1280 is not available for tiny; choose 1280x720."
    _send(browser, "longer than my credits", duration="4")
    assert _last_reply(browser).startswith("This video costs 4 credits but you have 2 left."), _last_reply(browser)
    assert _count(browser, "article[data-job]") == cards
    assert _credits(browser) == DAILY - 8
    assert "Only you can see this" in _text(browser, "article.refusal", last=True)
    _shoot(browser, "playground-refusal.png")


def test_members_have_their_own_credits_and_buttons(browser: WebDriver, base_url: str) -> None:
    Select(browser.find_element(By.ID, "member")).select_by_value("bob")
    _wait(browser, "Bob's page", lambda b: "Credits of Bob" in _text(b, "#panel"))
    assert _credits(browser) == DAILY
    assert "No videos yet." in _text(browser, "#history")
    # Alice's videos are in the channel, without buttons for Bob (the new video would be charged to him).
    assert _count(browser, "#job-1 video") == 1
    assert _count(browser, "#job-1 button") == 0
    quota = _text(browser, "#quota")
    assert quota.startswith("Unfinished videos: 0 of 2"), quota


def test_delete_removes_the_video_for_everyone(browser: WebDriver, base_url: str) -> None:
    _open(browser, base_url, "alice")
    browser.find_element(By.CSS_SELECTOR, '#job-2 button[data-action="delete"]').click()
    _wait(browser, "the deletion", lambda b: "The video was deleted." in _text(b, "#job-2"))
    assert _last_reply(browser) == "Deleted video #2."
    assert _count(browser, "#job-2 video") == 0
    assert "#2 succeeded · demo · 4 cr" in _text(browser, "#history")
    status = browser.execute_script("return fetch('/videos/2.mp4').then((r) => r.status);")
    assert status == 404


def test_the_page_requests_nothing_from_elsewhere(browser: WebDriver, base_url: str) -> None:
    _open(browser, base_url, "alice")
    resources = browser.execute_script(
        "return performance.getEntriesByType('resource').map((e) => e.name).concat([location.href]);"
    )
    assert resources, "no resources recorded"
    foreign = [r for r in resources if not r.startswith(base_url + "/")]
    assert foreign == []
    kinds = {r.rsplit("/", 1)[-1].split("?")[0] for r in resources}
    assert {"playground.js", "playground.css"} <= kinds, kinds
