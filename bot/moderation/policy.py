"""Per-server rules for who may start a video, where, and with what prompt. Pure: no I/O.

The settings live in the database (``bot/storage/guilds.py``) and are changed with ``/sora-admin``; this
module only decides. Every refusal is a :class:`PolicyRefusal` carrying one polite sentence, raised
before anything is charged, uploaded or sent to a provider.

Defaults (a server that never ran ``/sora-admin``), chosen for a public server full of strangers:

* ``/sora`` works in every channel and needs no role;
* a user waits ``cooldown_seconds`` (30 s) between two videos and may have at most
  ``max_jobs_per_user`` (2) unfinished videos per server;
* sora-2-pro is allowed: it already costs ``PRO_CREDIT_MULTIPLIER`` times as many credits, so the
  daily allowance bounds what it can spend. Admins can switch it off;
* no blocked terms (the provider's own moderation still applies), no audit channel.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from dataclasses import dataclass, field

from bot.config import Settings
from bot.errors import BotError, InvalidRequest

DEFAULT_COOLDOWN_SECONDS = Settings.cooldown_seconds
DEFAULT_MAX_JOBS_PER_USER = Settings.max_pending_jobs_per_user
DEFAULT_PRO_ALLOWED = True
MAX_BLOCKED_TERMS = 200
MAX_TERM_CHARS = 100
PRO_MODEL = "sora-2-pro"


class MatchMode(enum.StrEnum):
    WORD = "word"
    """The term as a whole word or phrase: ``cat`` blocks "a cat sat" but not "concatenate"."""
    SUBSTRING = "substring"
    """Anywhere, even inside another word: ``cat`` blocks "concatenate" too."""


class PolicyRefusal(BotError):
    """A server rule refuses this request; ``user_message`` says which and what to do."""

    def __init__(self, user_message: str, detail: str = "") -> None:
        super().__init__(detail or user_message, user_message=user_message)


class ChannelNotAllowed(PolicyRefusal):
    pass


class RoleRequired(PolicyRefusal):
    pass


class ProNotAllowed(PolicyRefusal):
    pass


class BlockedTermUsed(PolicyRefusal):
    pass


class TooManyJobs(PolicyRefusal):
    pass


class CoolingDown(PolicyRefusal):
    pass


@dataclass(frozen=True)
class BlockedTerm:
    term: str
    """Stored already normalised (see :func:`normalise`)."""
    mode: MatchMode = MatchMode.WORD

    def matches(self, text: str) -> bool:
        """``text`` must be normalised too."""
        if not self.term:
            return False
        if self.mode is MatchMode.SUBSTRING:
            return self.term in text
        # Whole word: no letter/digit/underscore right before or after (a phrase may contain spaces).
        return re.search(rf"(?<!\w){re.escape(self.term)}(?!\w)", text) is not None


@dataclass(frozen=True)
class Defaults:
    """The bot-wide values a server gets until its admins change them (from Settings)."""

    cooldown_seconds: int = DEFAULT_COOLDOWN_SECONDS
    max_jobs_per_user: int = DEFAULT_MAX_JOBS_PER_USER
    pro_allowed: bool = DEFAULT_PRO_ALLOWED
    daily_allowance: int = 40


@dataclass(frozen=True)
class GuildSettings:
    """One server's stored settings. ``None`` means "the bot's default" (see :class:`Defaults`)."""

    guild_id: str
    allowed_channel_ids: frozenset[str] = frozenset()
    """Empty: every channel."""
    required_role_id: str | None = None
    blocked_terms: tuple[BlockedTerm, ...] = ()
    cooldown_seconds: int | None = None
    max_jobs_per_user: int | None = None
    pro_allowed: bool | None = None
    audit_channel_id: str | None = None
    daily_allowance: int | None = None


@dataclass(frozen=True)
class Limits:
    """A server's settings with the defaults filled in: what actually applies."""

    cooldown_seconds: int
    max_jobs_per_user: int
    pro_allowed: bool
    daily_allowance: int

    @classmethod
    def of(cls, settings: GuildSettings, defaults: Defaults) -> Limits:
        def pick(value: int | bool | None, default: int | bool) -> int | bool:
            return default if value is None else value

        return cls(
            cooldown_seconds=int(pick(settings.cooldown_seconds, defaults.cooldown_seconds)),
            max_jobs_per_user=int(pick(settings.max_jobs_per_user, defaults.max_jobs_per_user)),
            pro_allowed=bool(pick(settings.pro_allowed, defaults.pro_allowed)),
            daily_allowance=int(pick(settings.daily_allowance, defaults.daily_allowance)),
        )


@dataclass(frozen=True)
class Requester:
    """Who asks, and where, as far as the rules care."""

    user_id: str
    channel_id: str | None = None
    parent_channel_id: str | None = None
    """The channel a thread belongs to: allowing a channel allows its threads."""
    role_ids: frozenset[str] | None = field(default_factory=frozenset)
    """``None``: unknown (a button clicked outside the server); the role rule is then not applied."""


def normalise(text: str) -> str:
    """Case- and width-insensitive form for term matching: NFKC (fullwidth ｃａｔ -> cat), casefold,
    runs of whitespace collapsed to one space."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def clean_term(term: str) -> str:
    """A blocked term as stored, or InvalidRequest for an unusable one."""
    value = normalise(term)
    if not value:
        raise InvalidRequest("A blocked term cannot be empty.")
    if len(value) > MAX_TERM_CHARS:
        raise InvalidRequest(f"A blocked term can be at most {MAX_TERM_CHARS} characters long.")
    return value


def blocked_term_in(prompt: str, terms: tuple[BlockedTerm, ...]) -> BlockedTerm | None:
    text = normalise(prompt)
    return next((t for t in terms if t.matches(text)), None)


def check_request(settings: GuildSettings, limits: Limits, requester: Requester, prompt: str, model: str) -> None:
    """The rules that need no history: channel, role, model, prompt. Raises PolicyRefusal."""
    allowed = settings.allowed_channel_ids
    if allowed and requester.channel_id not in allowed and requester.parent_channel_id not in allowed:
        channels = ", ".join(f"<#{c}>" for c in sorted(allowed)[:10])
        raise ChannelNotAllowed(
            f"Videos can't be made in this channel on this server. Please use {channels}.",
            f"channel {requester.channel_id} not in allow-list",
        )
    role_ids = requester.role_ids
    if settings.required_role_id and role_ids is not None and settings.required_role_id not in role_ids:
        raise RoleRequired(
            f"Making videos on this server needs the <@&{settings.required_role_id}> role.",
            f"user {requester.user_id} lacks role {settings.required_role_id}",
        )
    if model == PRO_MODEL and not limits.pro_allowed:
        raise ProNotAllowed(
            "sora-2-pro is switched off on this server; please choose sora-2.", "pro not allowed in guild"
        )
    term = blocked_term_in(prompt, settings.blocked_terms)
    if term is not None:
        # Never echo the term: it may be a slur, and repeating it in the channel helps nobody.
        raise BlockedTermUsed(
            "Your prompt contains a term this server has blocked, so it was not sent. "
            "Please rephrase it. Nothing was charged.",
            f"blocked term ({term.mode}) matched",
        )


def check_activity(limits: Limits, unfinished: int, last_job_at: float | None, now: float) -> None:
    """The rules that depend on the user's recent jobs in this server. Raises PolicyRefusal."""
    if limits.max_jobs_per_user and unfinished >= limits.max_jobs_per_user:
        plural = "video" if limits.max_jobs_per_user == 1 else "videos"
        raise TooManyJobs(
            f"You already have {unfinished} unfinished {'video' if unfinished == 1 else 'videos'}; this server "
            f"allows {limits.max_jobs_per_user} {plural} at a time per person. Please wait for one to finish.",
            f"{unfinished} unfinished >= {limits.max_jobs_per_user}",
        )
    if limits.cooldown_seconds and last_job_at is not None:
        wait = last_job_at + limits.cooldown_seconds - now
        if wait > 0:
            seconds = max(1, int(wait + 0.999))
            raise CoolingDown(
                f"Please wait {seconds} s before starting another video (this server's cooldown is "
                f"{limits.cooldown_seconds} s).",
                f"cooldown: {wait:.1f} s left",
            )
