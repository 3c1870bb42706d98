"""1,000 hypothesis-generated ``/sora`` interactions through the real bot and the fake Discord.

Prompts with unicode, control characters, mentions and extreme lengths; durations Discord would
never send; unknown sizes and models; attachments with random bytes, names, content types and
declared sizes. Every interaction must be acknowledged and answered (a refusal with a sentence),
nothing may raise unhandled, and only accepted jobs may touch the ledger.

Hypothesis only generates here (a sync ``@given`` collects ``FUZZ_EXAMPLES`` cases, seeded); the
cases are then sent in concurrent batches, which a per-example async ``@given`` could not do within
the time budget. A failing case is printed in full.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from PIL import Image

from tests.fakes.discord import Interaction
from tests.faults import chaos_world

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "1000"))
BATCH = 50
QUEUED = re.compile(r"Your video #(\d+) is queued")
MENTIONS = ("@everyone", "@here", "<@1234567890>", "<@&1234567890>", "<#1234567890>", "`", "**", "||")

pytestmark = pytest.mark.timeout(150)


def _image(fmt: str, size: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (40, 90, 200)).save(buf, fmt)
    return buf.getvalue()


IMAGES = (_image("PNG", (64, 48)), _image("JPEG", (48, 96)), _image("WEBP", (32, 32)), _image("GIF", (16, 16)))


@dataclass(frozen=True)
class Case:
    options: dict[str, Any]
    attachment: tuple[bytes, str, str | None, int | None] | None
    """(bytes, filename, content type, declared size or None for the true size)."""


prompts = st.one_of(
    st.text(max_size=120),
    st.lists(st.one_of(st.text(max_size=30), st.sampled_from(MENTIONS)), max_size=6).map("".join),
    st.builds(lambda part, n: (part or "x") * n, st.text(min_size=1, max_size=8), st.integers(300, 1200)),
    st.text(st.characters(codec="utf-8", categories=("Cc", "Cf", "Zs", "Zl", "Mn")), max_size=40),
)
durations = st.one_of(st.sampled_from((4, 8, 10, 12, 15, 25)), st.integers(-(2**63), 2**63 - 1))
sizes = st.one_of(st.sampled_from(("1280x720", "720x1280", "1792x1024", "1024x1792")), st.text(max_size=20))
models = st.one_of(st.sampled_from(("sora-2", "sora-2-pro")), st.text(max_size=20))
attachment_bytes = st.one_of(
    st.sampled_from(IMAGES),
    st.binary(max_size=512),
    st.builds(lambda data, cut: data[:cut], st.sampled_from(IMAGES), st.integers(0, 200)),  # truncated images
)
filenames = st.builds(
    lambda stem, ext: (stem or "f") + ext,
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc"), exclude_characters="/\\?#%"), max_size=40),
    st.sampled_from((".png", ".jpg", ".webp", ".gif", ".txt", ".exe", "", ".PNG")),
)
content_types = st.one_of(
    st.none(),
    st.sampled_from(("image/png", "image/jpeg", "image/webp", "text/plain", "application/pdf")),
    st.text(max_size=20),
)
declared = st.one_of(st.none(), st.integers(0, 2**40))


@st.composite
def cases(draw: st.DrawFn) -> Case:
    options: dict[str, Any] = {"prompt": draw(prompts)}
    for name, strategy in (("duration", durations), ("size", sizes), ("model", models)):
        if draw(st.booleans()):
            options[name] = draw(strategy)
    attachment = None
    if draw(st.integers(0, 2)) == 0:
        attachment = (draw(attachment_bytes), draw(filenames), draw(content_types), draw(declared))
    return Case(options, attachment)


def generate(count: int) -> list[Case]:
    found: list[Case] = []

    @seed(20261127)
    @settings(
        max_examples=count,
        database=None,
        deadline=None,
        phases=(Phase.generate,),
        suppress_health_check=list(HealthCheck),
    )
    @given(cases())
    def collect(case: Case) -> None:
        found.append(case)

    collect()
    return found[:count]


async def _send(w: Any, case: Case, user_id: int) -> Interaction:
    options = dict(case.options)
    if case.attachment is not None:
        data, filename, content_type, size = case.attachment
        payload = w.discord.upload_user_attachment(data, filename, content_type)
        if size is not None:
            payload["size"] = size
        options["image"] = payload
    return await w.discord.send_interaction(command="sora", options=options, user_id=user_id)


def _answer(ia: Interaction) -> str | None:
    messages = [m for m in ia.messages if m.content]
    return messages[-1].content if messages else None


async def test_fuzzed_sora_commands_are_all_answered_and_only_accepted_jobs_cost() -> None:
    examples = generate(EXAMPLES)
    assert len(examples) >= min(EXAMPLES, 900), len(examples)
    env = {"DAILY_CREDITS": "1000000000", "MAX_RUNNING_JOBS": "4"}
    async with chaos_world(run_seconds=3600.0, env=env, channels=3) as w:
        users = [w.discord.add_user(f"fuzz{i}").id for i in range(20)]
        sent: list[tuple[Case, Interaction]] = []
        for start in range(0, len(examples), BATCH):
            batch = examples[start : start + BATCH]
            interactions = await asyncio.gather(
                *(_send(w, case, users[(start + n) % len(users)]) for n, case in enumerate(batch))
            )
            sent += zip(batch, interactions, strict=True)
            try:
                await w.discord.wait_for(lambda b=interactions: all(_answer(ia) for ia in b), 30, what="every answer")
            except TimeoutError:
                silent = [case for case, ia in zip(batch, interactions, strict=True) if not _answer(ia)]
                pytest.fail(f"{len(silent)} interaction(s) never answered, e.g. {silent[0]!r}\n{w.bot.log_tail(40)}")
        await asyncio.sleep(1.0)

        accepted: set[int] = set()
        refusals: list[str] = []
        for case, ia in sent:
            assert ia.callback_type in (4, 5), f"not acknowledged: {case!r}"
            answer = _answer(ia)
            assert answer, f"no answer: {case!r}"
            assert all(m.ephemeral for m in ia.messages), f"a public answer: {case!r}"
            found = QUEUED.search(answer)
            if found:
                accepted.add(int(found.group(1)))
            else:
                refusals.append(answer)
                assert "Something went wrong" not in answer, f"unexpected error for {case!r}: {answer}"
        log = w.bot.log_text()
        for marker in ("Traceback", "Task exception", "Unhandled", "Ignoring exception"):
            assert marker not in log, f"{marker!r} in the bot log\n{w.bot.log_tail(80)}"
        jobs = {row[0] for row in w.db_rows("SELECT id FROM jobs")}
        charged = {row[0] for row in w.db_rows("SELECT DISTINCT job_id FROM ledger")}
        assert jobs == accepted, "every job was announced to its requester, and only those exist"
        assert charged <= accepted, "a refusal cost credits"
        print(f"FUZZ SUMMARY examples={len(sent)} accepted={len(accepted)} refused={len(refusals)} charged_refusals=0")
        assert accepted and refusals, "the fuzz should produce both outcomes"
