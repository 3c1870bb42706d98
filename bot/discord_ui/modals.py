"""The prompt modal behind Remix and Continue.

Its custom_id carries the action and the source job (``sora:modal:continue:42``). The modal is never
kept in memory (it is stopped before it is sent, so discord.py does not store it): every submit,
before or after a restart, is read from the raw interaction by :func:`parse_submit` and handled by
``cogs/creative.py``. One path, no state to lose.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import discord

from bot.domain import one_of
from bot.errors import InvalidRequest
from bot.jobs.model import Job

MODAL_ID = re.compile(r"sora:modal:(?P<action>remix|continue):(?P<job_id>[0-9]+)")
TITLES = {"remix": "Remix video #{id}", "continue": "Continue video #{id}"}
PROMPT_LIMIT = 4000  # Discord's cap for a text input; the provider's own limit is checked on submit


def modal_id(action: str, job_id: int) -> str:
    return f"sora:modal:{action}:{job_id}"


def prompt_modal(action: str, source: Job, *, seconds: Iterable[int], sizes: Iterable[str]) -> discord.ui.Modal:
    """The modal for ``action`` on ``source``: its prompt pre-filled, duration and size editable
    (pre-filled with the source's, the allowed values as placeholders)."""
    modal = discord.ui.Modal(title=TITLES[action].format(id=source.id), custom_id=modal_id(action, source.id))
    prompt_label = "What happens next?" if action == "continue" else "Prompt"
    modal.add_item(
        discord.ui.TextInput(
            label=prompt_label,
            custom_id="prompt",
            style=discord.TextStyle.paragraph,
            default=source.prompt[:PROMPT_LIMIT],
            max_length=PROMPT_LIMIT,
        )
    )
    modal.add_item(
        discord.ui.TextInput(
            label="Duration in seconds",
            custom_id="duration",
            default=str(source.seconds),
            placeholder=one_of(str(s) for s in seconds)[:100],
            max_length=3,
        )
    )
    modal.add_item(
        discord.ui.TextInput(
            label="Size (width x height)",
            custom_id="size",
            default=source.size,
            placeholder=one_of(sizes)[:100],
            max_length=9,
        )
    )
    modal.stop()  # not stored in memory: submits are dispatched by custom_id (see the module docstring)
    return modal


@dataclass(frozen=True)
class PromptSubmit:
    action: str
    job_id: int
    prompt: str
    duration: str
    size: str

    def seconds(self) -> int:
        try:
            return int(self.duration.strip().lower().removesuffix("s").strip())
        except ValueError:
            raise InvalidRequest(
                f"The duration must be a whole number of seconds, such as 8; got {self.duration.strip()[:20]!r}."
            ) from None

    def frame_size(self) -> str:
        return self.size.strip().lower().replace(" ", "").replace("×", "x")


def parse_submit(data: Mapping[str, Any] | None) -> PromptSubmit | None:
    """A modal submit of ours (raw interaction data), or None for anything else."""
    if not data:
        return None
    match = MODAL_ID.fullmatch(str(data.get("custom_id", "")))
    if match is None:
        return None
    values = dict(_values(data.get("components") or []))
    return PromptSubmit(
        action=match["action"],
        job_id=int(match["job_id"]),
        prompt=values.get("prompt", ""),
        duration=values.get("duration", ""),
        size=values.get("size", ""),
    )


def _values(components: Iterable[Mapping[str, Any]]) -> Iterable[tuple[str, str]]:
    """(custom_id, value) of every text input, whether wrapped in action rows or labels."""
    for component in components:
        if "components" in component:
            yield from _values(component["components"])
        elif "component" in component:
            yield from _values([component["component"]])
        elif "custom_id" in component and "value" in component:
            yield str(component["custom_id"]), str(component["value"])
