"""The fake Discord's world: users, guilds, channels, messages, interactions, and their JSON payloads.

Payload shapes follow Discord's API v10 as far as discord.py 2.7 reads them (see the field notes next to
each ``payload`` method). Nothing here does I/O.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

DISCORD_EPOCH_MS = 1420070400000

# Permission bits (https://discord.com/developers/docs/topics/permissions).
ADMINISTRATOR = 1 << 3
MANAGE_GUILD = 1 << 5
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
MANAGE_MESSAGES = 1 << 13
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
USE_APPLICATION_COMMANDS = 1 << 31
ALL_PERMISSIONS = (1 << 51) - 1
MEMBER_PERMISSIONS = VIEW_CHANNEL | SEND_MESSAGES | EMBED_LINKS | ATTACH_FILES | READ_MESSAGE_HISTORY
MEMBER_PERMISSIONS |= USE_APPLICATION_COMMANDS
BOT_PERMISSIONS = MEMBER_PERMISSIONS | MANAGE_MESSAGES

# Message flags.
FLAG_EPHEMERAL = 1 << 6
FLAG_LOADING = 1 << 7

DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024
TIER_UPLOAD_LIMITS = {2: 50 * 1024 * 1024, 3: 100 * 1024 * 1024}


class Snowflakes:
    """Snowflake ids carrying the current time, unique per fake (discord.py derives expiry from them)."""

    def __init__(self) -> None:
        self._increment = 0

    def next(self) -> int:
        self._increment = (self._increment + 1) % 4096
        ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        return (ms << 22) | (1 << 17) | self._increment


def snowflake_time(snowflake: int) -> float:
    """Unix time (seconds) at which ``snowflake`` was made."""
    return ((snowflake >> 22) + DISCORD_EPOCH_MS) / 1000


def iso(ts: float | None) -> str | None:
    return None if ts is None else dt.datetime.fromtimestamp(ts, dt.UTC).isoformat()


@dataclass
class User:
    id: int
    username: str
    bot: bool = False
    global_name: str | None = None

    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "username": self.username,
            "discriminator": "0",
            "global_name": self.global_name,
            "avatar": None,
            "public_flags": 0,
            "flags": 0,
        }
        if self.bot:
            data.update(bot=True, verified=True, mfa_enabled=False)
        return data


@dataclass
class Role:
    id: int
    name: str
    permissions: int
    position: int = 0
    managed: bool = False

    def payload(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "name": self.name,
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "icon": None,
            "unicode_emoji": None,
            "position": self.position,
            "permissions": str(self.permissions),
            "managed": self.managed,
            "mentionable": False,
            "flags": 0,
        }


@dataclass
class Member:
    user: User
    role_ids: list[int] = field(default_factory=list)
    joined_at: float = field(default_factory=time.time)

    def payload(self) -> dict[str, Any]:
        return {
            "user": self.user.payload(),
            "nick": None,
            "avatar": None,
            "roles": [str(r) for r in self.role_ids],
            "joined_at": iso(self.joined_at),
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "communication_disabled_until": None,
        }


@dataclass
class Overwrite:
    id: int
    type: int  # 0 role, 1 member
    allow: int = 0
    deny: int = 0

    def payload(self) -> dict[str, Any]:
        return {"id": str(self.id), "type": self.type, "allow": str(self.allow), "deny": str(self.deny)}


@dataclass
class Channel:
    id: int
    name: str
    guild_id: int | None
    type: int = 0  # 0 guild text, 1 DM
    position: int = 0
    recipient: User | None = None  # DM channels only
    overwrites: list[Overwrite] = field(default_factory=list)
    deleted: bool = False
    messages: dict[int, Message] = field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        last = next(reversed(self.messages), None)
        if self.type == 1:
            assert self.recipient is not None
            return {
                "id": str(self.id),
                "type": 1,
                "last_message_id": str(last) if last else None,
                "recipients": [self.recipient.payload()],
                "flags": 0,
            }
        return {
            "id": str(self.id),
            "type": self.type,
            "guild_id": str(self.guild_id),
            "name": self.name,
            "position": self.position,
            "permission_overwrites": [o.payload() for o in self.overwrites],
            "nsfw": False,
            "parent_id": None,
            "topic": None,
            "rate_limit_per_user": 0,
            "last_message_id": str(last) if last else None,
            "flags": 0,
        }


@dataclass
class Guild:
    id: int
    name: str
    owner_id: int
    premium_tier: int = 0
    upload_limit: int | None = None  # None: derived from premium_tier and FakeDiscord.upload_limit
    channels: dict[int, Channel] = field(default_factory=dict)
    roles: dict[int, Role] = field(default_factory=dict)
    members: dict[int, Member] = field(default_factory=dict)

    @property
    def everyone(self) -> Role:
        return self.roles[self.id]

    def text_channels(self) -> list[Channel]:
        return [c for c in self.channels.values() if c.type == 0 and not c.deleted]

    def base_permissions(self, user_id: int) -> int:
        if user_id == self.owner_id:
            return ALL_PERMISSIONS
        member = self.members.get(user_id)
        perms = self.everyone.permissions
        for rid in member.role_ids if member else []:
            if rid in self.roles:
                perms |= self.roles[rid].permissions
        return ALL_PERMISSIONS if perms & ADMINISTRATOR else perms

    def channel_permissions(self, user_id: int, channel: Channel) -> int:
        """Discord's permission algorithm: base, then @everyone, role and member overwrites."""
        perms = self.base_permissions(user_id)
        if perms & ADMINISTRATOR or perms == ALL_PERMISSIONS:
            return perms
        member = self.members.get(user_id)
        role_ids = set(member.role_ids) if member else set()
        by_id = {o.id: o for o in channel.overwrites}
        if (everyone := by_id.get(self.id)) is not None:
            perms = (perms & ~everyone.deny) | everyone.allow
        allow = deny = 0
        for o in channel.overwrites:
            if o.type == 0 and o.id in role_ids:
                allow, deny = allow | o.allow, deny | o.deny
        perms = (perms & ~deny) | allow
        if (own := by_id.get(user_id)) is not None and own.type == 1:
            perms = (perms & ~own.deny) | own.allow
        return perms

    def payload(self, *, full: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "name": self.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(self.owner_id),
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "features": [],
            "roles": [r.payload() for r in self.roles.values()],
            "emojis": [],
            "stickers": [],
            "application_id": None,
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "safety_alerts_channel_id": None,
            "vanity_url_code": None,
            "premium_tier": self.premium_tier,
            "premium_subscription_count": 0,
            "premium_progress_bar_enabled": False,
            "preferred_locale": "en-US",
            "max_members": 500000,
        }
        if full:  # GUILD_CREATE extras
            data.update(
                joined_at=iso(time.time()),
                large=False,
                unavailable=False,
                member_count=len(self.members),
                members=[m.payload() for m in self.members.values()],
                channels=[c.payload() for c in self.channels.values() if not c.deleted],
                threads=[],
                voice_states=[],
                presences=[],
                stage_instances=[],
                guild_scheduled_events=[],
                soundboard_sounds=[],
            )
        return data


@dataclass
class Attachment:
    id: int
    filename: str
    data: bytes
    content_type: str | None
    url: str
    proxy_url: str
    width: int | None = None
    height: int | None = None
    expires_at: float = 0.0  # the CDN answers 404 after this (signed URLs expire)

    @property
    def size(self) -> int:
        return len(self.data)

    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "filename": self.filename,
            "size": self.size,
            "url": self.url,
            "proxy_url": self.proxy_url,
        }
        if self.content_type is not None:
            data["content_type"] = self.content_type
        if self.width is not None and self.height is not None:
            data.update(width=self.width, height=self.height)
        return data


@dataclass
class Message:
    """A stored message. ``history`` keeps the payload as it was before each edit (oldest first)."""

    id: int
    channel_id: int
    guild_id: int | None
    author: User
    content: str = ""
    embeds: list[dict[str, Any]] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    allowed_mentions: dict[str, Any] | None = None
    flags: int = 0
    nonce: str | None = None
    tts: bool = False
    created_at: float = field(default_factory=time.time)
    edited_at: float | None = None
    deleted: bool = False
    webhook_id: int | None = None
    interaction_id: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def edit_count(self) -> int:
        return len(self.history)

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & FLAG_EPHEMERAL)

    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "type": 0 if self.interaction_id is None else 20,
            "channel_id": str(self.channel_id),
            "author": self.author.payload(),
            "content": self.content,
            "timestamp": iso(self.created_at),
            "edited_timestamp": iso(self.edited_at),
            "tts": self.tts,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [a.payload() for a in self.attachments],
            "embeds": self.embeds,
            "components": self.components,
            "pinned": False,
            "flags": self.flags,
        }
        if self.guild_id is not None:
            data["guild_id"] = str(self.guild_id)
        if self.nonce is not None:
            data["nonce"] = self.nonce
        if self.webhook_id is not None:
            data["webhook_id"] = str(self.webhook_id)
            data["application_id"] = str(self.webhook_id)
        return data


@dataclass
class CallbackAttempt:
    type: int
    status: int
    latency: float  # seconds from dispatch to the callback's arrival


@dataclass
class WebhookCall:
    """One follow-up/edit/delete through an interaction token, accepted or not."""

    method: str
    target: str  # "followup", "@original" or a message id
    status: int
    payload: dict[str, Any] | None


@dataclass
class Interaction:
    """What the bot did with one interaction the fake dispatched (read it in asserts).

    ``callback_type``: 4 message, 5 deferred message, 6 deferred update, 7 update message, 9 modal
    (None until the bot answers). ``ephemeral`` is fixed by the first accepted callback.
    ``original`` is the response message (the "thinking" placeholder for type 5, edited through
    ``@original``), ``followups`` the follow-up messages, ``webhook_calls`` every token call.
    """

    id: int
    token: str
    type: int
    payload: dict[str, Any]
    guild_id: int | None
    channel_id: int
    user_id: int
    dispatched_at: float = field(default_factory=time.monotonic)
    created_at: float = field(default_factory=time.time)
    expired: bool = False
    callback_type: int | None = None
    callback_data: dict[str, Any] | None = None
    callback_latency: float | None = None
    callback_attempts: list[CallbackAttempt] = field(default_factory=list)
    ephemeral: bool = False
    original: Message | None = None
    followups: list[Message] = field(default_factory=list)
    webhook_calls: list[WebhookCall] = field(default_factory=list)
    answered: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def modal(self) -> dict[str, Any] | None:
        """The modal the bot opened (callback type 9): custom_id, title, components."""
        return self.callback_data if self.callback_type == 9 else None

    @property
    def deferred(self) -> bool:
        return self.callback_type in (5, 6)

    @property
    def messages(self) -> list[Message]:
        """Every message the user saw from this interaction: the original response, then follow-ups."""
        out = [self.original] if self.original is not None else []
        return out + [m for m in self.followups if m is not self.original]

    async def wait_callback(self, timeout: float = 5.0) -> int:
        """Wait for the first accepted callback; return its type."""
        await asyncio.wait_for(self.answered.wait(), timeout)
        assert self.callback_type is not None
        return self.callback_type


@dataclass
class RateLimitRule:
    """``limit`` requests per ``per`` seconds (sliding window).

    ``advertise``: whether successful responses carry X-RateLimit-* headers describing this bucket.
    Off by default for the edit bucket: discord.py then learns the limit only from 429s (what a
    shared/undisclosed per-channel limit looks like), so its real 429 handling runs.
    """

    limit: int = 5
    per: float = 5.0
    advertise: bool = False


class Bucket:
    def __init__(self, key: str, rule: RateLimitRule) -> None:
        self.key = key
        self.rule = rule
        self.hits: list[float] = []

    def _prune(self, now: float) -> None:
        self.hits = [t for t in self.hits if now - t < self.rule.per]

    def take(self) -> float:
        """Count one request; return 0 if allowed, else the seconds until a slot frees up."""
        now = time.monotonic()
        self._prune(now)
        if len(self.hits) >= self.rule.limit:
            return max(0.001, self.hits[0] + self.rule.per - now)
        self.hits.append(now)
        return 0.0

    def headers(self, retry_after: float = 0.0) -> dict[str, str]:
        now = time.monotonic()
        self._prune(now)
        remaining = max(0, self.rule.limit - len(self.hits))
        reset_after = retry_after or (self.hits[0] + self.rule.per - now if self.hits else self.rule.per)
        return {
            "X-RateLimit-Limit": str(self.rule.limit),
            "X-RateLimit-Remaining": str(0 if retry_after else remaining),
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": self.key,
        }


@dataclass
class FileSummary:
    field: str
    filename: str
    size: int


@dataclass
class RequestRecord:
    """One REST request as the fake saw it (the Authorization header is not kept)."""

    method: str
    path: str
    query: dict[str, str]
    json: Any = None  # the JSON body, or the parsed payload_json of a multipart body
    files: list[FileSummary] = field(default_factory=list)
    status: int = 0
    at: float = field(default_factory=time.monotonic)


@dataclass
class Fault:
    """One canned answer served instead of the real handler (see FakeDiscord.inject)."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    path_contains: str = ""
    method: str | None = None
    drop_connection: bool = False
    delay: float = 0.0


def error_body(message: str, code: int) -> dict[str, Any]:
    return {"message": message, "code": code}


def find_message(channels: Iterable[Channel], message_id: int) -> Message | None:
    for channel in channels:
        if (msg := channel.messages.get(message_id)) is not None:
            return msg
    return None
