"""The pure parts of the creative loop: the prompt modal and its submit parsing, the result buttons'
custom ids, where a posted video lives, and how lineage, privacy and cost show in the status embed."""

from __future__ import annotations

import dataclasses

import pytest

from bot.discord_ui.modals import parse_submit, prompt_modal
from bot.discord_ui.result_views import ResultButton, result_view
from bot.discord_ui.status import PRIVATE_NOTE, cost_line, status_embed
from bot.errors import InvalidRequest
from bot.jobs.model import Job, State

JOB = Job(
    id=42,
    state=State.SUCCEEDED,
    provider="relay",
    user_id="7",
    prompt="a *bold* owl",
    seconds=8,
    size="1280x720",
    model="sora-2",
    created_at=0.0,
    updated_at=0.0,
    guild_id="1",
    channel_id="2",
    cost=8,
    result_message_id="99",
    result_url="https://discord.com/channels/@me/55/99",
)


async def test_prompt_modal_is_prefilled_carries_the_source_and_is_not_kept_in_memory() -> None:
    modal = prompt_modal("continue", JOB, seconds=(4, 8, 12), sizes=("1280x720", "720x1280"))
    data = modal.to_dict()
    assert data["custom_id"] == "sora:modal:continue:42"
    inputs = {row["components"][0]["custom_id"]: row["components"][0] for row in data["components"]}
    assert inputs["prompt"]["value"] == "a *bold* owl"
    assert inputs["duration"]["value"] == "8" and inputs["duration"]["placeholder"] == "4, 8 or 12"
    assert inputs["size"]["value"] == "1280x720" and inputs["size"]["placeholder"] == "1280x720 or 720x1280"
    assert modal.is_finished(), "a stopped modal is not stored by discord.py: submits go through parse_submit"


@pytest.mark.parametrize(
    "components",
    [
        # Classic action rows, and the newer label wrappers: both carry the same values.
        [
            {"type": 1, "components": [{"type": 4, "custom_id": k, "value": v}]}
            for k, v in {"prompt": "next", "duration": " 12s ", "size": "720 × 1280"}.items()
        ],
        [
            {"type": 18, "component": {"type": 4, "custom_id": k, "value": v}}
            for k, v in {"prompt": "next", "duration": " 12s ", "size": "720 × 1280"}.items()
        ],
    ],
)
def test_parse_submit_reads_rows_and_labels(components: list[dict[str, object]]) -> None:
    submit = parse_submit({"custom_id": "sora:modal:remix:42", "components": components})
    assert submit is not None
    assert (submit.action, submit.job_id, submit.prompt) == ("remix", 42, "next")
    assert submit.seconds() == 12 and submit.frame_size() == "720x1280"


def test_parse_submit_ignores_other_modals_and_refuses_a_non_number() -> None:
    assert parse_submit({"custom_id": "other:modal", "components": []}) is None
    assert parse_submit({"custom_id": "sora:modal:delete:1", "components": []}) is None
    assert parse_submit(None) is None
    bad = parse_submit(
        {
            "custom_id": "sora:modal:remix:1",
            "components": [{"type": 1, "components": [{"type": 4, "custom_id": "duration", "value": "long"}]}],
        }
    )
    assert bad is not None
    with pytest.raises(InvalidRequest, match="whole number of seconds"):
        bad.seconds()


async def test_result_buttons_have_stable_ids_and_continue_needs_an_uploaded_video() -> None:
    ids = [item.custom_id for item in result_view(JOB).children]  # type: ignore[attr-defined]
    assert ids == ["sora:retry:42", "sora:remix:42", "sora:continue:42", "sora:delete:42"]
    link_only = [item.custom_id for item in result_view(JOB, uploaded=False).children]  # type: ignore[attr-defined]
    assert "sora:continue:42" not in link_only
    match = ResultButton.__discord_ui_compiled_template__.fullmatch("sora:continue:42")
    assert match is not None and match["action"] == "continue"
    assert ResultButton.__discord_ui_compiled_template__.fullmatch("sora:cancel:42") is None


def test_the_posted_video_is_found_from_its_link_even_in_dms() -> None:
    assert JOB.result_channel_id == "55"
    assert dataclasses.replace(JOB, result_url="https://provider.example/v.mp4").result_channel_id == "2"
    assert dataclasses.replace(JOB, result_url="https://discord.com/channels/1/3/100").result_channel_id == "2"
    assert dataclasses.replace(JOB, result_message_id=None).result_channel_id is None


def test_status_embed_shows_lineage_cost_balance_and_hides_private_prompts() -> None:
    retry = dataclasses.replace(JOB, kind="continue", source_job_id=41)
    text = str(status_embed(retry, balance_left=31).to_dict())
    assert "Continues video #41" in text and "8 credits charged" in text and "31 credits" in text
    private = status_embed(dataclasses.replace(JOB, private=True)).to_dict()
    assert private["description"] == PRIVATE_NOTE and "owl" not in str(private)
    assert cost_line(dataclasses.replace(JOB, state=State.RUNNING)) == "8 credits reserved"
    assert cost_line(dataclasses.replace(JOB, state=State.FAILED)) == "8 credits, refunded"
