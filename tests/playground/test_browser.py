"""The playground in a real browser: headless Chromium (Debian's chromium + chromium-driver, installed
by .ci/run) driven by Selenium against a real ``python -m bot`` process with no DISCORD_TOKEN.

One browser and one bot process for the whole module; the tests run in file order and build on each
other's videos (Alice makes #1, retries it as #2, continues #1 as #3; Bob makes #4 from an image, remixes
it as #5; Mo cancels #6). Set PLAYGROUND_SCREENSHOTS=docs to refresh the README's screenshots.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from PIL import Image

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
DAILY = 12
# A model the demo provider hosts with one size only, to see a size refusal name the allowed one; and
# one whose jobs last an hour, to press Cancel while it runs.
MODELS_TOML = """
[models.tiny]
name = "Tiny test model"
durations = [4]
sizes = ["1280x720"]
typical_seconds = 3

[[models.tiny.hosts]]
provider = "demo"
model = "tiny"

[models.slow]
name = "Slow test model"
durations = [4]
sizes = ["1280x720"]
typical_seconds = 3

[[models.slow.hosts]]
provider = "demo"
model = "slow"
fields = { min_seconds = 3600 }
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="playground-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def base_url(workdir: Path) -> Iterator[str]:
    """``python -m bot`` with no DISCORD_TOKEN: the playground, its address in one line."""
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


def _send(
    browser: WebDriver,
    prompt: str,
    *,
    model: str = "demo",
    duration: str = "",
    size: str = "",
    image: Path | None = None,
) -> None:
    replies = _count(browser, "article.ephemeral")
    browser.find_element(By.ID, "prompt").send_keys(prompt)
    if image is not None:
        browser.find_element(By.ID, "image").send_keys(str(image))
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
    _send(browser, "longer than my credits", duration="8")
    assert _last_reply(browser).startswith("This video costs 8 credits but you have 4 left."), _last_reply(browser)
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
    # The file goes once the deletion is stored: ask until it has gone (or fail after the wait).
    _wait(
        browser,
        "the video file gone",
        lambda b: b.execute_script("return fetch('/videos/2.mp4').then((r) => r.status);") == 404,
    )


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


def _click(browser: WebDriver, job_id: int, action: str) -> None:
    """Press a card's button in one script (a live update may replace the card at any moment)."""
    browser.execute_script(
        "document.querySelector(`#job-${arguments[0]} button[data-action='${arguments[1]}']`).click();", job_id, action
    )


def _follow_up(browser: WebDriver, job_id: int, action: str, prompt: str) -> str:
    """Open the Remix/Continue dialog of a card, put ``prompt`` in it and submit; the prompt it offered."""
    replies = _count(browser, "article.ephemeral")
    _click(browser, job_id, action)
    _wait(browser, "the dialog", lambda b: b.execute_script("return document.getElementById('followup').open;"))
    title = _text(browser, "#followup-title")
    assert title == f"{'Remix' if action == 'remix' else 'Continue'} video #{job_id}", title
    box = browser.find_element(By.ID, "followup-prompt")
    offered = str(box.get_property("value"))
    box.clear()
    box.send_keys(prompt)
    browser.find_element(By.ID, "followup-send").click()
    _wait(browser, f"the {action} reply", lambda b: _count(b, "article.ephemeral") > replies)
    assert not browser.execute_script("return document.getElementById('followup').open;")
    return offered


def _frame_pixel(browser: WebDriver, job_id: int, at: float, x: float, y: float) -> dict[str, int]:
    """The colour the page's own <video> shows at ``at`` seconds, at (x, y) as fractions of the frame."""
    found = browser.execute_async_script(
        """
        const [jobId, at, x, y, done] = arguments;
        const video = document.querySelector(`#job-${jobId} video`);
        video.muted = true;
        video.addEventListener('error', () => done({error: video.error && video.error.code}));
        video.addEventListener('seeked', () => {
          const canvas = document.createElement('canvas');
          canvas.width = video.videoWidth;
          canvas.height = video.videoHeight;
          const context = canvas.getContext('2d');
          context.drawImage(video, 0, 0);
          const [left, top] = [Math.floor(canvas.width * x), Math.floor(canvas.height * y)];
          const [r, g, b] = context.getImageData(left, top, 1, 1).data;
          done({r, g, b});
        }, {once: true});
        const seek = () => { video.currentTime = at; };
        if (video.readyState >= 1) seek(); else video.addEventListener('loadedmetadata', seek, {once: true});
        """,
        job_id,
        at,
        x,
        y,
    )
    assert "error" not in found, found
    return dict(found)


def test_continue_starts_from_the_last_frame_through_its_dialog(browser: WebDriver, base_url: str) -> None:
    _open(browser, base_url, "alice")
    offered = _follow_up(browser, 1, "continue", "the boat reaches the harbour")
    assert offered == ""  # a continuation is a new scene: nothing to edit
    assert _last_reply(browser) == "Your video #3 (continue of #1) is queued (4 credits reserved)."
    _wait(browser, "video #3 to finish", lambda b: _card_state(b, 3) == "succeeded")
    assert "Continues video #1" in _text(browser, "#job-3")
    assert "the boat reaches the harbour" in _text(browser, "#job-3 .prompt")
    # Its first frame is #1's last one: the same picture in the corner, away from the text.
    first = _frame_pixel(browser, 3, 0.0, 0.1, 0.1)
    last = _frame_pixel(browser, 1, 3.99, 0.1, 0.1)
    assert all(abs(first[c] - last[c]) < 30 for c in "rgb"), (first, last)
    _wait(browser, "the charge", lambda b: _credits(b) == 0)


def test_an_uploaded_image_is_the_first_frame(browser: WebDriver, base_url: str, workdir: Path) -> None:
    red = workdir / "red.png"
    picture = io.BytesIO()
    Image.new("RGB", (640, 640), (255, 0, 0)).save(picture, format="PNG")
    red.write_bytes(picture.getvalue())
    Select(browser.find_element(By.ID, "member")).select_by_value("bob")
    _wait(browser, "Bob's page", lambda b: "Credits of Bob" in _text(b, "#panel"))
    _send(browser, "a red balloon rises", image=red)
    assert _last_reply(browser) == "Your video #4 is queued (demo, 4 credits reserved)."
    assert browser.find_element(By.ID, "image").get_property("value") == ""  # the form is ready for the next one
    _wait(browser, "video #4 to finish", lambda b: _card_state(b, 4) == "succeeded")
    # Above the prompt's panel, the first second shows the picture (letterboxed in the middle).
    start = _frame_pixel(browser, 4, 0.2, 0.5, 0.15)
    assert start["r"] > 200 and start["g"] < 60 and start["b"] < 60, start
    later = _frame_pixel(browser, 4, 3.5, 0.5, 0.15)
    assert not (later["r"] > 200 and later["g"] < 60), later  # then the demo's own picture


def test_remix_offers_the_prompt_to_edit_and_keeps_the_image(browser: WebDriver, base_url: str) -> None:
    offered = _follow_up(browser, 4, "remix", "a blue balloon rises")
    assert offered == "a red balloon rises"
    assert _last_reply(browser) == "Your video #5 (remix of #4) is queued (4 credits reserved)."
    _wait(browser, "video #5 to finish", lambda b: _card_state(b, 5) == "succeeded")
    assert "Remix of video #4" in _text(browser, "#job-5")
    start = _frame_pixel(browser, 5, 0.2, 0.5, 0.15)
    assert start["r"] > 200 and start["g"] < 60 and start["b"] < 60, start  # #4's reference image again
    _wait(browser, "the charges", lambda b: _credits(b) == DAILY - 8)


def test_cancel_stops_a_running_video_and_refunds_it(browser: WebDriver, base_url: str) -> None:
    Select(browser.find_element(By.ID, "member")).select_by_value("mod")
    _wait(browser, "Mo's page", lambda b: "Credits of Mo" in _text(b, "#panel"))
    _send(browser, "an hour-long sunset", model="slow")
    assert _last_reply(browser) == "Your video #6 is queued (slow, 4 credits reserved)."
    _wait(browser, "video #6 to run", lambda b: _card_state(b, 6) == "running")
    assert _credits(browser) == DAILY - 4
    replies = _count(browser, "article.ephemeral")
    _click(browser, 6, "cancel")
    _wait(browser, "the cancel reply", lambda b: _count(b, "article.ephemeral") > replies)
    assert _last_reply(browser) == "Cancelled video #6; 4 credits were refunded."
    _wait(browser, "video #6 to show cancelled", lambda b: _card_state(b, 6) == "cancelled")
    assert _count(browser, "#job-6 button") == 0
    _wait(browser, "the refund", lambda b: _credits(b) == DAILY)
    assert "↩️ 4 refunded for video #6" in _text(browser, "#panel")


def test_a_cooldown_refusal_is_shown_and_charges_nothing(browser: WebDriver, base_url: str, workdir: Path) -> None:
    # What /sora-admin cooldown stores for a server (the playground has no admin page): an hour.
    with contextlib.closing(sqlite3.connect(workdir / "data" / "playground.db")) as db, db:
        db.execute(
            "INSERT INTO guild_settings (guild_id, cooldown_seconds) VALUES ('playground', 3600)"
            " ON CONFLICT (guild_id) DO UPDATE SET cooldown_seconds = excluded.cooldown_seconds"
        )
    _open(browser, base_url, "mod")
    assert "cooldown 3600 s" in _text(browser, "#quota")
    _wait(browser, "the countdown", lambda b: " s left" in _text(b, "#cooldown"))
    cards = _count(browser, "article[data-job]")
    _send(browser, "one more sunset")
    reply = _last_reply(browser)
    assert reply.startswith("Please wait ") and reply.endswith("(this server's cooldown is 3600 s)."), reply
    assert _count(browser, "article[data-job]") == cards
    assert _credits(browser) == DAILY


def test_a_request_for_another_host_name_is_refused(base_url: str) -> None:
    """DNS rebinding: a hostile site whose name resolves to 127.0.0.1 must not drive the playground."""
    parts = urlsplit(base_url)
    for host, expected in (("evil.example", 421), (f"evil.example:{parts.port}", 421), (parts.netloc, 200)):
        connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
        try:
            connection.request("GET", "/", headers={"Host": host})
            assert connection.getresponse().status == expected, host
        finally:
            connection.close()
