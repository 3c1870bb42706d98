"""A fake Discord (REST + gateway) on aiohttp that the real discord.py 2.7 talks to end to end.

Quick use::

    async with FakeDiscord() as fake:                     # binds 127.0.0.1, random port
        env = {"DISCORD_TOKEN": fake.token, "DISCORD_API_BASE_URL": fake.api_base,
               "DISCORD_GATEWAY_URL": fake.gateway_url}   # see tests/e2e/harness.py (BotProcess)
        ...start the bot, await fake.wait_ready()...
        ia = await fake.send_interaction(command="sora", options={"prompt": "a cat"})
        assert await ia.wait_callback(timeout=3) == 5     # deferred
        msg = await fake.wait_for(lambda: fake.find_message(lambda m: m.attachments), timeout=10)

Addresses: ``api_base`` (http://127.0.0.1:PORT/api/v10, for ``discord.http.Route.BASE``), ``gateway_url``
(ws://127.0.0.1:PORT/gateway, also returned by ``GET /gateway[/bot]`` and as READY's
``resume_gateway_url``), ``base_url``. Attachments are served at ``{base_url}/attachments/{cid}/{aid}/{name}``.

World (built in ``__init__``, change before the bot connects): ``token`` (any other token: 401 on
``GET /users/@me``, gateway close 4004), ``application_id``, ``bot_user``, ``owner`` (guild owner),
``user`` (a plain member, "alice"), ``other_user`` ("bob"); ``guild`` (premium_tier 0) with roles
``@everyone``, a managed bot role, ``admin_role`` (ADMINISTRATOR, held by the owner), text channels
``channel`` ("general") and ``videos_channel``. More: ``add_guild``, ``add_channel``, ``add_user``.
``guilds``, ``channels`` and ``users`` are dicts by id.

Knobs (plain attributes unless noted):
  upload_limit                 10 MiB: per-file limit for tier 0/1 guilds and DMs (``Guild.upload_limit``
                               overrides per guild; tier 2/3: 50/100 MiB). Bigger file → 413 code 40005.
  edit_rule / send_rule        RateLimitRule for message edits (default 5 per 5 s per channel, not announced
                               in headers so discord.py meets real 429s) and sends (None = unlimited).
  callback_deadline            3.0 s; a callback later than that → 404 code 10062.
  token_ttl                    900 s interaction token life; ``expire_token(token)`` /
                               ``expire_all_tokens()`` end it now → webhook routes 401 code 50027.
  nonce_window                 300 s: a repeated (channel, nonce) with enforce_nonce returns the earlier message.
  dispatch_message_events      True: MESSAGE_CREATE/UPDATE/DELETE go to the bot over the gateway.
  edit_delay                   0.0 s: each message PATCH takes this long (a slow Discord), so overlapping
                               edits of one message show in ``max_edits_in_flight`` ({path: most at once}).
  inject(status, body, times=, headers=, path_contains=, method=, drop_connection=, delay=)
                               canned answers for the next matching REST requests (a 429 gets Via and
                               Retry-After headers, and a default rate-limit body when ``body`` is None).
  forbid(channel_id, deny=...) / allow(channel_id)   deny the bot permissions there (403 code 50013).
  block_dms(user_id)           DMs to that user → 403 code 50007.
  await delete_channel(cid)    its routes → 404 code 10003; CHANNEL_DELETE is dispatched.
  expire_attachment(aid)       the CDN answers 404 for it (signed URLs expire).
  await disconnect_gateway(code=4000)  close sockets; discord.py RESUMEs and gets missed events replayed.
  await invalidate_session()   op 9 (not resumable): discord.py re-IDENTIFIES.
  gateway.ack_heartbeats       False makes the connection a zombie (discord.py reconnects).

Interactions (each returns an ``Interaction`` record, see state.py, filled in as the bot acts):
  await send_interaction(command=, options=[{name,type,value}] or {"name": value}, user_id=, guild_id=,
                         channel_id=, attachments={id: payload} or [payload], attachment_size_limit=,
                         permissions=, locale=, dm=False)
  (raises PermissionError if the synced command's default_member_permissions hide it from the user)
  await send_autocomplete(command=, focused=, options={"name": "typed"})  autocomplete (type 4 → callback 8)
  await send_component(message_id, custom_id, component_type=2, values=None, ...)   button/select
                         (on any live message, ephemeral ones included)
  await send_modal_submit(custom_id, values, modal=None, ...)                        modal submit
  upload_user_attachment(data, filename, content_type=None, width=None, height=None) → attachment payload
  Record fields: callback_type (5 deferred, 4 message, 6 deferred update, 7 update, 9 modal), ephemeral,
  callback_latency, callback_attempts, original, followups, webhook_calls, modal; ``await wait_callback()``.

Reading state: ``messages(cid)`` (live, oldest first), ``find_message(pred)``, ``deleted_messages``,
``requests`` (RequestRecord: method, path, query, json, files, status), ``requests_to(path, method)``,
``count_429``, ``nonce_hits``, ``synced_commands`` ({guild_id or None: [command]}), ``sync_count``,
``gateway.identifies`` / ``gateway.resumes`` / ``gateway.sessions``, ``ready_count``,
``await wait_for(predicate, timeout=)`` (returns the predicate's first truthy value, else TimeoutError),
``await wait_ready(after=0)`` (waits until more than ``after`` IDENTIFYs got READY).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import mimetypes
import secrets
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

from .gateway import Gateway
from .interactions import InteractionRoutes
from .recording import Recorder
from .rest import Rest
from .senders import InteractionSender
from .state import (
    ADMINISTRATOR,
    ATTACH_FILES,
    BOT_PERMISSIONS,
    DEFAULT_UPLOAD_LIMIT,
    EMBED_LINKS,
    MEMBER_PERMISSIONS,
    SEND_MESSAGES,
    TIER_UPLOAD_LIMITS,
    Attachment,
    Channel,
    Fault,
    Guild,
    Interaction,
    Member,
    Message,
    Overwrite,
    RateLimitRule,
    RequestRecord,
    Role,
    Snowflakes,
    User,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


class FakeDiscord(InteractionSender, Recorder):
    def __init__(self, *, token: str | None = None) -> None:
        self.token = token or f"fake.{secrets.token_urlsafe(24)}"
        self.snowflakes = Snowflakes()
        self.port = 0
        self.upload_limit = DEFAULT_UPLOAD_LIMIT
        self.edit_rule: RateLimitRule | None = RateLimitRule(limit=5, per=5.0)
        self.send_rule: RateLimitRule | None = None
        self.callback_deadline = 3.0
        self.token_ttl = 900.0
        self.nonce_window = 300.0
        self.dispatch_message_events = True
        self.recommended_shards = 1

        self.users: dict[int, User] = {}
        self.guilds: dict[int, Guild] = {}
        self.channels: dict[int, Channel] = {}
        self.attachments: dict[int, Attachment] = {}
        self.deleted_messages: list[Message] = []
        self.interactions: dict[int, Interaction] = {}
        self.interactions_by_token: dict[str, Interaction] = {}
        self.synced_commands: dict[int | None, list[dict[str, Any]]] = {}
        self.sync_count = 0
        self.nonce_hits = 0
        self.blocked_dm_users: set[int] = set()
        self.left_guilds: set[int] = set()
        """Guilds the bot left; they stay in ``guilds`` (the users are still there) but not at IDENTIFY."""
        self.requests: list[RequestRecord] = []
        self.faults: deque[Fault] = deque()
        self.edit_delay = 0.0
        self.edits_in_flight: Counter[str] = Counter()
        self.max_edits_in_flight: Counter[str] = Counter()
        self._nonces: dict[tuple[int, str], tuple[Message, float]] = {}
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()

        self.application_id = self.snowflakes.next()
        self.bot_user = self.add_user("SoraBot", bot=True, user_id=self.application_id)
        self.owner = self.add_user("owner")
        self.user = self.add_user("alice")
        self.other_user = self.add_user("bob")
        self.guild = self.add_guild("Test Guild", owner=self.owner)
        self.admin_role = self.add_role(self.guild, "Admin", ADMINISTRATOR)
        self.guild.members[self.owner.id].role_ids.append(self.admin_role.id)
        self.channel = next(iter(self.guild.channels.values()))
        self.videos_channel = self.add_channel(self.guild, "videos")

        self.gateway = Gateway(self)
        self.rest = Rest(self)
        self.app = web.Application(middlewares=[self._middleware], client_max_size=256 * 1024 * 1024)
        self.app.router.add_get("/gateway", self.gateway.handle)
        self.rest.setup(self.app)
        InteractionRoutes(self, self.rest).setup(self.app)
        self._runner: web.AppRunner | None = None

    # ---- lifecycle and addresses ----------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        return f"{self.base_url}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    def bot_env(self) -> dict[str, str]:
        """The three settings a bot needs to talk to this fake."""
        return {
            "DISCORD_TOKEN": self.token,
            "DISCORD_API_BASE_URL": self.api_base,
            "DISCORD_GATEWAY_URL": self.gateway_url,
        }

    async def start(self) -> str:
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self.base_url

    async def stop(self) -> None:
        await self.gateway.close_all()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---- building the world ---------------------------------------------------------------------

    def add_user(self, username: str, *, bot: bool = False, user_id: int | None = None) -> User:
        user = User(user_id or self.snowflakes.next(), username, bot=bot)
        self.users[user.id] = user
        for guild in self.guilds.values():
            guild.members.setdefault(user.id, Member(user, []))
        return user

    def add_guild(self, name: str, *, owner: User | None = None, premium_tier: int = 0) -> Guild:
        owner = owner or self.owner
        guild = Guild(self.snowflakes.next(), name, owner.id, premium_tier=premium_tier)
        guild.roles[guild.id] = Role(guild.id, "@everyone", MEMBER_PERMISSIONS)
        bot_role = self.add_role(guild, self.bot_user.username, BOT_PERMISSIONS, managed=True)
        for user in self.users.values():
            guild.members[user.id] = Member(user, [bot_role.id] if user.id == self.bot_user.id else [])
        self.guilds[guild.id] = guild
        self.add_channel(guild, "general")
        return guild

    def add_role(self, guild: Guild, name: str, permissions: int, *, managed: bool = False) -> Role:
        role = Role(self.snowflakes.next(), name, permissions, position=len(guild.roles), managed=managed)
        guild.roles[role.id] = role
        return role

    def add_channel(self, guild: Guild, name: str) -> Channel:
        channel = Channel(self.snowflakes.next(), name, guild.id, position=len(guild.channels))
        guild.channels[channel.id] = channel
        self.channels[channel.id] = channel
        return channel

    def dm_channel(self, user_id: int) -> Channel:
        for channel in self.channels.values():
            if channel.type == 1 and channel.recipient is not None and channel.recipient.id == user_id:
                return channel
        channel = Channel(self.snowflakes.next(), "", None, type=1, recipient=self.users[user_id])
        self.channels[channel.id] = channel
        return channel

    async def join_guild(self, guild: Guild) -> None:
        """The bot is added to ``guild`` while running: GUILD_CREATE to the session that owns it."""
        if self.bot_user.id not in guild.members:
            guild.members[self.bot_user.id] = Member(self.bot_user, [])
        self.left_guilds.discard(guild.id)
        await self.gateway.broadcast("GUILD_CREATE", guild.payload(full=True), guild.id)

    async def remove_bot_from(self, guild: Guild) -> None:
        """The bot leaves ``guild`` (DELETE /users/@me/guilds/{id}): GUILD_DELETE, and its REST calls there fail."""
        guild.members.pop(self.bot_user.id, None)
        self.left_guilds.add(guild.id)
        await self.gateway.broadcast("GUILD_DELETE", {"id": str(guild.id), "unavailable": False}, guild.id)
        self.notify()

    def upload_limit_for(self, guild_id: int | None) -> int:
        guild = self.guilds.get(guild_id) if guild_id is not None else None
        if guild is None:
            return self.upload_limit
        if guild.upload_limit is not None:
            return guild.upload_limit
        return TIER_UPLOAD_LIMITS.get(guild.premium_tier, self.upload_limit)

    # ---- messages and attachments (used by the routes too) --------------------------------------

    def store_attachment(
        self,
        channel_id: int,
        filename: str,
        data: bytes,
        content_type: str | None = None,
        *,
        width: int | None = None,
        height: int | None = None,
        ttl: float = 86400.0,
    ) -> Attachment:
        aid = self.snowflakes.next()
        now = int(time.time())
        signed = f"?ex={now + int(ttl):x}&is={now:x}&hm={secrets.token_hex(32)}&"
        path = f"/attachments/{channel_id}/{aid}/{filename}{signed}"
        att = Attachment(
            id=aid,
            filename=filename,
            data=data,
            content_type=content_type or mimetypes.guess_type(filename)[0],
            url=self.base_url + path,
            proxy_url=self.base_url + path,
            width=width,
            height=height,
            expires_at=time.time() + ttl,
        )
        self.attachments[aid] = att
        return att

    def upload_user_attachment(
        self,
        data: bytes,
        filename: str,
        content_type: str | None = None,
        *,
        width: int | None = None,
        height: int | None = None,
    ) -> dict[str, Any]:
        """A user's upload for an attachment option: returns the payload for ``resolved.attachments``."""
        att = self.store_attachment(self.channel.id, filename, data, content_type, width=width, height=height)
        if content_type is None:  # Discord guesses; the bot must check the bytes anyway
            att.content_type = mimetypes.guess_type(filename)[0]
        return att.payload()

    def expire_attachment(self, attachment_id: int | str) -> None:
        self.attachments[int(attachment_id)].expires_at = 0.0

    def nonce_lookup(self, channel_id: int, nonce: str) -> Message | None:
        hit = self._nonces.get((channel_id, nonce))
        if hit is None or hit[0].deleted or time.time() - hit[1] > self.nonce_window:
            return None
        return hit[0]

    async def store_message(self, channel: Channel, msg: Message, *, visible: bool = True) -> None:
        if visible:
            channel.messages[msg.id] = msg
            if msg.nonce is not None:
                self._nonces[(channel.id, msg.nonce)] = (msg, time.time())
            await self._message_event("MESSAGE_CREATE", msg, msg.payload())
        self.notify()

    async def message_updated(self, msg: Message) -> None:
        if not msg.ephemeral:
            await self._message_event("MESSAGE_UPDATE", msg, msg.payload())
        self.notify()

    async def remove_message(self, msg: Message) -> None:
        msg.deleted = True
        channel = self.channels.get(msg.channel_id)
        if channel is not None and channel.messages.pop(msg.id, None) is not None:
            data = {"id": str(msg.id), "channel_id": str(msg.channel_id)}
            if msg.guild_id is not None:
                data["guild_id"] = str(msg.guild_id)
            await self._message_event("MESSAGE_DELETE", msg, data)
        self.deleted_messages.append(msg)
        self.notify()

    async def _message_event(self, event: str, msg: Message, data: dict[str, Any]) -> None:
        if self.dispatch_message_events:
            await self.gateway.broadcast(event, data, msg.guild_id)

    # ---- fault and permission knobs -------------------------------------------------------------

    def forbid(self, channel_id: int, deny: int = SEND_MESSAGES | ATTACH_FILES | EMBED_LINKS) -> None:
        """Deny the bot ``deny`` in a channel (a member overwrite, like an admin would set)."""
        channel = self.channels[channel_id]
        channel.overwrites = [o for o in channel.overwrites if o.id != self.bot_user.id]
        channel.overwrites.append(Overwrite(self.bot_user.id, 1, deny=deny))
        self._spawn(self.gateway.broadcast("CHANNEL_UPDATE", channel.payload(), channel.guild_id))

    def allow(self, channel_id: int) -> None:
        channel = self.channels[channel_id]
        channel.overwrites = [o for o in channel.overwrites if o.id != self.bot_user.id]
        self._spawn(self.gateway.broadcast("CHANNEL_UPDATE", channel.payload(), channel.guild_id))

    def block_dms(self, user_id: int) -> None:
        self.blocked_dm_users.add(user_id)

    async def delete_channel(self, channel_id: int) -> None:
        channel = self.channels[channel_id]
        channel.deleted = True
        if channel.guild_id is not None:
            await self.gateway.broadcast("CHANNEL_DELETE", channel.payload(), channel.guild_id)
        self.notify()

    def expire_token(self, token: str) -> None:
        self.interactions_by_token[token].expired = True

    def expire_all_tokens(self) -> None:
        for record in self.interactions.values():
            record.expired = True

    async def disconnect_gateway(self, code: int = 4000) -> None:
        await self.gateway.disconnect(code)

    async def invalidate_session(self) -> None:
        await self.gateway.invalidate(resumable=False)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- reading state --------------------------------------------------------------------------

    def messages(self, channel_id: int | None = None) -> list[Message]:
        """Live (not deleted, not ephemeral) messages of a channel (default: ``channel``), oldest first."""
        return list(self.channels[channel_id or self.channel.id].messages.values())

    def find_any_message(self, message_id: int) -> Message | None:
        """A live message by id, ephemeral interaction messages included."""
        for channel in self.channels.values():
            if message_id in channel.messages:
                return channel.messages[message_id]
        for record in self.interactions.values():
            for msg in record.messages:
                if msg.id == message_id and not msg.deleted:
                    return msg
        return None

    def find_message(self, predicate: Callable[[Message], bool]) -> Message | None:
        for channel in self.channels.values():
            for msg in channel.messages.values():
                if predicate(msg):
                    return msg
        return None

    @property
    def ready_count(self) -> int:
        """How many IDENTIFYs were answered with READY."""
        return sum(1 for i in self.gateway.identifies if i["token_ok"])

    def notify(self) -> None:
        self._changed.set()

    async def wait_for(self, predicate: Callable[[], T], timeout: float = 5.0, *, what: str = "") -> T:
        """Poll ``predicate`` on every state change (and every 50 ms) until it returns something truthy."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            result = predicate()
            if result:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"fake discord: nothing after {timeout}s waiting for {what or predicate}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.05))

    async def wait_ready(self, after: int = 0, timeout: float = 15.0) -> None:
        await self.wait_for(lambda: self.ready_count > after, timeout, what="an IDENTIFY answered with READY")
