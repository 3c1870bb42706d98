"""The playground's HTML: the page around the channel, one message card per job, the member panel.
Everything shown is escaped here (prompts and errors are untrusted text)."""

from __future__ import annotations

import datetime as dt
import string
from html import escape
from importlib import resources
from typing import Any

from bot.catalogue import ModelSpec
from bot.credits.ledger import DAILY
from bot.jobs.describe import HEADLINES, cost_line, lineage_line, provider_line, settings_line
from bot.jobs.model import Job, State
from bot.playground.actions import MemberState
from bot.playground.members import MEMBERS, Member, may_manage
from bot.playground.notifier import video_url


def _template(name: str) -> string.Template:
    return string.Template(resources.files("bot.playground").joinpath("templates", name).read_text(encoding="utf-8"))


def page(
    who: Member, models: list[ModelSpec], default_model: str, jobs: list[Job], state: MemberState, provider: str
) -> str:
    durations = sorted({s for m in models for s in m.durations})
    sizes = list(dict.fromkeys(s for m in models for s in m.sizes))
    return _template("page.html").substitute(
        member_id=escape(who.id),
        member_options="".join(
            f'<option value="{escape(m.id)}"{" selected" if m.id == who.id else ""}>{escape(m.name)}</option>'
            for m in MEMBERS
        ),
        model_options="".join(_model_option(m, m.id == default_model) for m in models),
        duration_options='<option value="">model default</option>'
        + "".join(f'<option value="{s}">{s} seconds</option>' for s in durations),
        size_options='<option value="">model default</option>'
        + "".join(f'<option value="{escape(s)}">{escape(s)}</option>' for s in sizes),
        messages="".join(card(job, who) for job in jobs),
        panel=panel(who, state),
        provider=escape(provider),
    )


def _model_option(spec: ModelSpec, selected: bool) -> str:
    label = f"{spec.label} · {'/'.join(map(str, spec.durations))} s{' · sound' if spec.audio else ''}"
    return (
        f'<option value="{escape(spec.id)}"{" selected" if selected else ""}'
        f' data-durations="{" ".join(map(str, spec.durations))}" data-sizes="{escape(" ".join(spec.sizes))}"'
        f' data-audio="{int(spec.audio)}" data-image="{int(spec.image)}">{escape(label)}</option>'
    )


def headline(job: Job) -> str:
    text = HEADLINES[job.state]
    if job.state is State.QUEUED and job.queue_position:
        return f"{text} — position {job.queue_position} in line"
    if job.state is State.RUNNING and job.progress is not None:
        return f"{text} — {job.progress:.0f}%"
    if job.state in (State.FAILED, State.CANCELLED) and job.error_message:
        return f"{text}: {job.error_message}"
    return text


def card(job: Job, viewer: Member) -> str:
    """One job as a message in the channel: the status "embed", the video once posted, its buttons."""
    rows = [("Settings", settings_line(job)), ("Provider", provider_line(job))]
    if (lineage := lineage_line(job)) is not None:
        rows.append(("Made from", lineage))
    rows += [("Requested by", _name(job.user_id)), ("Cost", cost_line(job))]
    fields = "".join(f"<div><dt>{escape(k)}</dt><dd>{escape(v)}</dd></div>" for k, v in rows)
    progress = ""
    if job.state is State.RUNNING and job.progress is not None:
        progress = f'<progress max="100" value="{job.progress:.0f}"></progress>'
    media = ""
    if job.result_message_id and job.result_deleted_at:
        media = '<p class="note">The video was deleted.</p>'
    elif job.state is State.SUCCEEDED and job.result_message_id:
        media = f'<video class="result" controls preload="metadata" src="{video_url(job.id)}"></video>'
    note = f'<p class="note">{escape(job.delivery_note)}</p>' if job.delivery_note else ""
    return (
        f'<article class="msg" id="job-{job.id}" data-job="{job.id}" data-state="{job.state.value}"'
        f' data-owner="{escape(job.user_id)}">'
        '<div class="avatar">S</div><div class="body">'
        f'<header><b>Sora</b> <span class="tag">BOT</span> <time>{_clock(job.created_at)}</time></header>'
        f'<div class="embed s-{job.state.value}"><h3>Video #{job.id}</h3>'
        f'<p class="prompt">{escape(job.prompt)}</p><dl>{fields}</dl>'
        f'<p class="status">{escape(headline(job))}</p>{progress}</div>'
        f"{media}{note}{_buttons(job, viewer)}</div></article>"
    )


def _buttons(job: Job, viewer: Member) -> str:
    def button(action: str, label: str, style: str = "") -> str:
        return f'<button type="button" class="{style}" data-action="{action}" data-job="{job.id}">{label}</button>'

    if not job.state.terminal:
        if job.state in (State.QUEUED, State.RUNNING) and may_manage(viewer, job.user_id):
            return f'<div class="buttons">{button("cancel", "Cancel", "danger")}</div>'
        return ""
    if job.state is not State.SUCCEEDED or job.result_deleted_at or not job.result_message_id:
        return ""
    shown = []
    if viewer.id == job.user_id:
        shown += [button("retry", "🔁 Retry"), button("remix", "🎨 Remix"), button("continue", "⏭️ Continue")]
    if may_manage(viewer, job.user_id):
        shown.append(button("delete", "🗑️ Delete", "danger"))
    attrs = f'data-prompt="{escape(job.prompt)}" data-seconds="{job.seconds}" data-size="{escape(job.size)}"'
    return f'<div class="buttons" {attrs}>{"".join(shown)}</div>' if shown else ""


def panel(who: Member, state: MemberState) -> str:
    """/credits and /jobs for one member, with the server's quota and cooldown as they stand."""
    balance, limits = state.balance, state.limits
    cooldown = "ready"
    ready_at = ""
    if state.ready_at is not None:
        cooldown = "cooling down"
        ready_at = f' data-ready-at="{state.ready_at:.3f}"'
    history = "".join(f"<li>{_history_line(job)}</li>" for job in state.history) or "<li>No videos yet.</li>"
    settled = {e["job_id"] for e in state.ledger if e["kind"] in ("capture", "refund") and e["job_id"] is not None}
    ledger = "".join(f"<li>{escape(line)}</li>" for e in state.ledger if (line := _entry(e, settled)))
    return (
        f'<section id="panel" data-member="{escape(who.id)}">'
        f'<h2>Credits of {escape(who.name)}</h2><p class="big"><span id="credits">{balance.total}</span> credits</p>'
        f"<p>Today: {balance.daily_left} of {balance.allowance} left · extra {max(0, balance.extra)}"
        f" · resets {balance.resets_in()} (00:00 UTC)</p>"
        f'<p id="quota">Unfinished videos: {state.unfinished} of {limits.max_jobs_per_user} ·'
        f' cooldown {limits.cooldown_seconds} s: <span id="cooldown"{ready_at}>{cooldown}</span></p>'
        f'<h3>Recent credits</h3><ul class="ledger">{ledger or "<li>Nothing yet.</li>"}</ul>'
        f'<h3>History (/jobs)</h3><ul id="history">{history}</ul></section>'
    )


def _history_line(job: Job) -> str:
    progress = f" {job.progress:.0f}%" if job.state is State.RUNNING and job.progress is not None else ""
    lineage = f" ({escape(lineage_line(job) or '')})" if job.kind != "new" else ""
    deleted = " — video deleted" if job.result_deleted_at else ""
    return (
        f'<a href="#job-{job.id}">#{job.id}</a> {escape(job.state.value)}{progress} · {escape(job.model)}'
        f" · {job.cost} cr · {escape(_short(job.prompt, 50))}{lineage}{deleted}"
    )


def _entry(entry: dict[str, Any], settled: set[int]) -> str | None:
    """One ledger row in words (as /credits shows it), or None for a reserve settled later."""
    kind, amount, job_id = entry["kind"], int(entry["amount"]), entry["job_id"]
    pool = "today's credits" if entry["pool"] == DAILY else "extra"
    if kind == "reserve":
        return None if job_id in settled else f"🕓 {amount} reserved for video #{job_id} ({pool})"
    if kind == "capture":
        return f"➖ {amount} charged for video #{job_id} ({pool})"
    if kind == "refund":
        return f"↩️ {amount} refunded for video #{job_id} ({pool})"
    return f"🎁 {amount:+d} {pool} from an admin"


def reply(text: str, refused: bool) -> str:
    """An "only you can see this" answer, as Discord shows an ephemeral reply."""
    kind = "refusal" if refused else "notice"
    return (
        f'<article class="msg ephemeral {kind}"><div class="avatar">S</div><div class="body">'
        '<header><b>Sora</b> <span class="tag">BOT</span> <small>Only you can see this</small></header>'
        f"<p>{escape(text)}</p></div></article>"
    )


def _name(user_id: str) -> str:
    return next((m.name for m in MEMBERS if m.id == user_id), user_id)


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _clock(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp).strftime("%H:%M:%S")
