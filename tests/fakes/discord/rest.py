"""REST routes of the fake Discord (bot-token side): login, app info, commands, guilds, channels, messages, CDN."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import mimetypes
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .state import (
    ATTACH_FILES,
    READ_MESSAGE_HISTORY,
    SEND_MESSAGES,
    VIEW_CHANNEL,
    Attachment,
    Bucket,
    Channel,
    FileSummary,
    Message,
    RateLimitRule,
    User,
    error_body,
)

if TYPE_CHECKING:
    from .server import FakeDiscord

log = logging.getLogger(__name__)

API_PREFIX = "/api/v10"
MAX_CONTENT = 2000
MAX_EMBEDS = 10
MAX_FILES = 10


@dataclass
class Upload:
    index: int
    filename: str
    data: bytes


PARSED: web.RequestKey[tuple[Any, list[Upload]]] = web.RequestKey("parsed", tuple)


class ApiError(Exception):
    """Raised by handlers; the middleware turns it into Discord's JSON error body."""

    def __init__(self, status: int, message: str, code: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {message} ({code})")
        self.status, self.message, self.code = status, message, code
        self.headers = headers or {}
        self.body: dict[str, Any] = error_body(message, code)


def unknown_channel() -> ApiError:
    return ApiError(404, "Unknown Channel", 10003)


def unknown_message() -> ApiError:
    return ApiError(404, "Unknown Message", 10008)


def missing_permissions() -> ApiError:
    return ApiError(403, "Missing Permissions", 50013)


def invalid_form(detail: str) -> ApiError:
    err = ApiError(400, "Invalid Form Body", 50035)
    err.body["errors"] = {"_errors": [{"code": "BASE_TYPE_INVALID", "message": detail}]}
    return err


def jres(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON response whose Content-Type is exactly application/json (discord.py checks equality)."""
    return web.Response(
        body=json.dumps(data).encode(), status=status, headers={**(headers or {}), "Content-Type": "application/json"}
    )


async def parse_body(request: web.Request) -> tuple[Any, list[Upload]]:
    """JSON body, or multipart ``payload_json`` + ``files[n]`` as discord.py sends them."""
    if request.content_type.startswith("multipart/"):
        form = await request.post()
        payload: Any = None
        uploads: list[Upload] = []
        for name, value in form.items():
            if name == "payload_json":
                payload = json.loads(value if isinstance(value, str) else value.file.read())
            elif name.startswith("files[") and isinstance(value, web.FileField):
                uploads.append(Upload(int(name[6:-1]), value.filename, value.file.read()))
        return payload, uploads
    raw = await request.read()
    return (json.loads(raw) if raw else None), []


def summarize(uploads: list[Upload]) -> list[FileSummary]:
    return [FileSummary(f"files[{u.index}]", u.filename, len(u.data)) for u in uploads]


class Rest:
    """Bot-token routes. Handlers read and change the FakeDiscord's state."""

    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake
        self.buckets: dict[str, Bucket] = {}

    def setup(self, app: web.Application) -> None:
        p = API_PREFIX
        r = app.router
        r.add_get(p + "/users/@me", self.get_me)
        r.add_get(p + "/users/{uid}", self.get_user)
        r.add_post(p + "/users/@me/channels", self.create_dm)
        r.add_get(p + "/oauth2/applications/@me", self.get_app)
        r.add_get(p + "/applications/@me", self.get_app)
        r.add_get(p + "/gateway", self.get_gateway)
        r.add_get(p + "/gateway/bot", self.get_gateway)
        for prefix in (p + "/applications/{app}", p + "/applications/{app}/guilds/{gid}"):
            r.add_put(prefix + "/commands", self.put_commands)
            r.add_get(prefix + "/commands", self.get_commands)
            r.add_post(prefix + "/commands", self.post_command)
            r.add_delete(prefix + "/commands/{cmd}", self.delete_command)
        r.add_get(p + "/guilds/{gid}", self.get_guild)
        r.add_get(p + "/guilds/{gid}/channels", self.get_guild_channels)
        r.add_get(p + "/guilds/{gid}/roles", self.get_guild_roles)
        r.add_get(p + "/guilds/{gid}/members/{uid}", self.get_member)
        r.add_delete(p + "/users/@me/guilds/{gid}", self.leave_guild)
        r.add_get(p + "/channels/{cid}", self.get_channel)
        r.add_delete(p + "/channels/{cid}", self.delete_channel)
        r.add_post(p + "/channels/{cid}/typing", self.typing)
        r.add_get(p + "/channels/{cid}/messages", self.list_messages)
        r.add_post(p + "/channels/{cid}/messages", self.create_message)
        r.add_get(p + "/channels/{cid}/messages/{mid}", self.get_message)
        r.add_patch(p + "/channels/{cid}/messages/{mid}", self.edit_message)
        r.add_delete(p + "/channels/{cid}/messages/{mid}", self.delete_message)
        r.add_put(p + "/channels/{cid}/messages/{mid}/reactions/{emoji}/@me", self.typing)
        # Any file name, braces included (the default pattern refuses "{" and "}": Discord's CDN does not).
        r.add_get("/attachments/{cid}/{aid}/{filename:[^/]+}", self.cdn)

    # ---- helpers --------------------------------------------------------------------------------

    def auth(self, request: web.Request) -> None:
        if request.headers.get("Authorization") != f"Bot {self.fake.token}":
            raise ApiError(401, "401: Unauthorized", 0)

    def channel(self, request: web.Request) -> Channel:
        self.auth(request)
        channel = self.fake.channels.get(int(request.match_info["cid"]))
        if channel is None or channel.deleted:
            raise unknown_channel()
        return channel

    def require(self, channel: Channel, perms: int) -> None:
        fake = self.fake
        if channel.guild_id is None:
            if (
                channel.recipient is not None
                and channel.recipient.id in fake.blocked_dm_users
                and perms & SEND_MESSAGES
            ):
                raise ApiError(403, "Cannot send messages to this user", 50007)
            return
        guild = fake.guilds[channel.guild_id]
        if guild.channel_permissions(fake.bot_user.id, channel) & perms != perms:
            raise missing_permissions()

    def rate_limit(self, key: str, rule: RateLimitRule | None) -> dict[str, str]:
        """Take a slot in bucket ``key``; raise a proper 429 when it is full. Returns headers for a success."""
        if rule is None:
            return {}
        bucket = self.buckets.get(key)
        if bucket is None or bucket.rule is not rule:
            bucket = self.buckets[key] = Bucket(secrets.token_hex(8), rule)
        retry_after = bucket.take()
        if retry_after:
            headers = bucket.headers(retry_after) | {
                "Retry-After": str(math.ceil(retry_after)),
                "X-RateLimit-Scope": "shared",
                "Via": "1.1 google",  # discord.py treats a 429 without Via as a Cloudflare ban
            }
            err = ApiError(429, "You are being rate limited.", 0, headers)
            err.body = {"message": "You are being rate limited.", "retry_after": round(retry_after, 3), "global": False}
            raise err
        return bucket.headers() if rule.advertise else {}

    def upload_limit(self, channel: Channel) -> int:
        return self.fake.upload_limit_for(channel.guild_id)

    def check_message(self, content: str, embeds: list[Any], files: int, attachments: int, components: int) -> None:
        if len(content) > MAX_CONTENT:
            raise invalid_form(f"content: Must be {MAX_CONTENT} or fewer in length.")
        if len(embeds) > MAX_EMBEDS:
            raise invalid_form(f"embeds: Must be {MAX_EMBEDS} or fewer in length.")
        if files > MAX_FILES:
            raise invalid_form(f"files: Must be {MAX_FILES} or fewer in length.")
        if not (content or embeds or attachments or components):
            raise ApiError(400, "Cannot send an empty message", 50006)

    def make_attachments(
        self, channel: Channel, uploads: list[Upload], specs: list[dict[str, Any]] | None
    ) -> list[Attachment]:
        limit = self.upload_limit(channel)
        if any(len(u.data) > limit for u in uploads):
            raise ApiError(413, "Request entity too large", 40005)
        names = {str(s.get("id")): s.get("filename") for s in specs or []}
        return [
            self.fake.store_attachment(channel.id, names.get(str(u.index)) or u.filename, u.data)
            for u in sorted(uploads, key=lambda u: u.index)
        ]

    def new_message(
        self,
        channel: Channel,
        author: User,
        payload: dict[str, Any],
        uploads: list[Upload],
        **extra: Any,
    ) -> Message:
        """Validate and build (not store) a message from a create payload."""
        attachments = self.make_attachments(channel, uploads, payload.get("attachments"))
        content = payload.get("content") or ""
        embeds = payload.get("embeds") or []
        components = payload.get("components") or []
        self.check_message(content, embeds, len(uploads), len(attachments), len(components))
        return Message(
            id=self.fake.snowflakes.next(),
            channel_id=channel.id,
            guild_id=channel.guild_id,
            author=author,
            content=content,
            embeds=embeds,
            components=components,
            attachments=attachments,
            allowed_mentions=payload.get("allowed_mentions"),
            flags=int(payload.get("flags") or 0),
            nonce=payload.get("nonce"),
            tts=bool(payload.get("tts")),
            **extra,
        )

    def apply_edit(self, channel: Channel, msg: Message, payload: dict[str, Any], uploads: list[Upload]) -> None:
        """Discord's PATCH semantics: only the fields present change; ``attachments`` lists what stays."""
        new_files = self.make_attachments(channel, uploads, payload.get("attachments"))
        content = msg.content if "content" not in payload else payload["content"] or ""
        embeds = msg.embeds if "embeds" not in payload else payload["embeds"] or []
        components = msg.components if "components" not in payload else payload["components"] or []
        attachments = msg.attachments
        if "attachments" in payload:
            keep = {str(a.get("id")) for a in payload["attachments"] or []}
            attachments = [a for a in msg.attachments if str(a.id) in keep]
        attachments = attachments + new_files
        self.check_message(content, embeds, len(uploads), len(attachments), len(components))
        msg.history.append(msg.payload())
        msg.content, msg.embeds, msg.components, msg.attachments = content, embeds, components, attachments
        if "allowed_mentions" in payload:
            msg.allowed_mentions = payload["allowed_mentions"]
        if "flags" in payload and payload["flags"] is not None:
            msg.flags = int(payload["flags"]) | (msg.flags & 64)  # ephemerality cannot change
        msg.edited_at = time.time()

    def find_message(self, channel: Channel, request: web.Request) -> Message:
        msg = channel.messages.get(int(request.match_info["mid"]))
        if msg is None:
            raise unknown_message()
        return msg

    # ---- identity and application ---------------------------------------------------------------

    async def get_me(self, request: web.Request) -> web.Response:
        self.auth(request)
        return jres(self.fake.bot_user.payload())

    async def get_user(self, request: web.Request) -> web.Response:
        self.auth(request)
        user = self.fake.users.get(int(request.match_info["uid"]))
        if user is None:
            raise ApiError(404, "Unknown User", 10013)
        return jres(user.payload())

    async def get_app(self, request: web.Request) -> web.Response:
        self.auth(request)
        fake = self.fake
        return jres(
            {
                "id": str(fake.application_id),
                "name": fake.bot_user.username,
                "description": "fake application",
                "icon": None,
                "bot_public": True,
                "bot_require_code_grant": False,
                "owner": fake.owner.payload(),
                "verify_key": "0" * 64,
                "flags": 0,
                "team": None,
                "summary": "",
                "rpc_origins": [],
                "interactions_endpoint_url": None,
                "bot": fake.bot_user.payload(),
            }
        )

    async def get_gateway(self, request: web.Request) -> web.Response:
        data: dict[str, Any] = {"url": self.fake.gateway_url}
        if request.path.endswith("/bot"):
            self.auth(request)
            data["shards"] = self.fake.recommended_shards
            data["session_start_limit"] = {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}
        return jres(data)

    async def create_dm(self, request: web.Request) -> web.Response:
        self.auth(request)
        payload = request[PARSED][0]
        user = self.fake.users.get(int(payload["recipient_id"]))
        if user is None:
            raise ApiError(404, "Unknown User", 10013)
        return jres(self.fake.dm_channel(user.id).payload())

    # ---- commands -------------------------------------------------------------------------------

    def _commands_key(self, request: web.Request) -> int | None:
        self.auth(request)
        if int(request.match_info["app"]) != self.fake.application_id:
            raise ApiError(403, "Missing Access", 50001)
        gid = request.match_info.get("gid")
        if gid is not None and int(gid) not in self.fake.guilds:
            raise ApiError(403, "Missing Access", 50001)
        return None if gid is None else int(gid)

    def _register(self, key: int | None, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        old = {(c["name"], c.get("type", 1)): c for c in self.fake.synced_commands.get(key, [])}
        out = []
        for cmd in commands:
            prev = old.get((cmd["name"], cmd.get("type", 1)))
            stored = {
                "type": 1,
                "description": "",
                "options": [],
                "default_member_permissions": None,
                "nsfw": False,
                **cmd,
                "id": prev["id"] if prev else str(self.fake.snowflakes.next()),
                "application_id": str(self.fake.application_id),
                "version": str(self.fake.snowflakes.next()),
            }
            if key is not None:
                stored["guild_id"] = str(key)
            out.append(stored)
        return out

    async def put_commands(self, request: web.Request) -> web.Response:
        key = self._commands_key(request)
        payload = request[PARSED][0]
        self.fake.synced_commands[key] = self._register(key, payload or [])
        self.fake.sync_count += 1
        self.fake.notify()
        return jres(self.fake.synced_commands[key])

    async def get_commands(self, request: web.Request) -> web.Response:
        return jres(self.fake.synced_commands.get(self._commands_key(request), []))

    async def post_command(self, request: web.Request) -> web.Response:
        key = self._commands_key(request)
        payload = request[PARSED][0]
        existing = [c for c in self.fake.synced_commands.get(key, []) if c["name"] != payload["name"]]
        (stored,) = self._register(key, [payload])
        self.fake.synced_commands[key] = [*existing, stored]
        self.fake.notify()
        return jres(stored, status=201)

    async def delete_command(self, request: web.Request) -> web.Response:
        key = self._commands_key(request)
        cmds = self.fake.synced_commands.get(key, [])
        self.fake.synced_commands[key] = [c for c in cmds if c["id"] != request.match_info["cmd"]]
        return web.Response(status=204)

    # ---- guilds ---------------------------------------------------------------------------------

    def _guild(self, request: web.Request) -> Any:
        self.auth(request)
        guild = self.fake.guilds.get(int(request.match_info["gid"]))
        if guild is None:
            raise ApiError(404, "Unknown Guild", 10004)
        return guild

    async def get_guild(self, request: web.Request) -> web.Response:
        guild = self._guild(request)
        data = guild.payload(full=False)
        if request.query.get("with_counts") in ("1", "true"):
            data.update(approximate_member_count=len(guild.members), approximate_presence_count=0)
        return jres(data)

    async def get_guild_channels(self, request: web.Request) -> web.Response:
        return jres([c.payload() for c in self._guild(request).channels.values() if not c.deleted])

    async def get_guild_roles(self, request: web.Request) -> web.Response:
        return jres([r.payload() for r in self._guild(request).roles.values()])

    async def get_member(self, request: web.Request) -> web.Response:
        member = self._guild(request).members.get(int(request.match_info["uid"]))
        if member is None:
            raise ApiError(404, "Unknown Member", 10007)
        return jres(member.payload())

    async def leave_guild(self, request: web.Request) -> web.Response:
        guild = self._guild(request)
        await self.fake.remove_bot_from(guild)
        return web.Response(status=204)

    # ---- channels and messages ------------------------------------------------------------------

    async def get_channel(self, request: web.Request) -> web.Response:
        channel = self.channel(request)
        self.require(channel, VIEW_CHANNEL)
        return jres(channel.payload())

    async def delete_channel(self, request: web.Request) -> web.Response:
        channel = self.channel(request)
        await self.fake.delete_channel(channel.id)
        return jres(channel.payload())

    async def typing(self, request: web.Request) -> web.Response:
        self.channel(request)
        return web.Response(status=204)

    async def list_messages(self, request: web.Request) -> web.Response:
        channel = self.channel(request)
        self.require(channel, VIEW_CHANNEL | READ_MESSAGE_HISTORY)
        limit = min(100, int(request.query.get("limit", 50)))
        msgs = sorted(channel.messages.values(), key=lambda m: m.id, reverse=True)
        if before := request.query.get("before"):
            msgs = [m for m in msgs if m.id < int(before)]
        if after := request.query.get("after"):
            msgs = [m for m in msgs if m.id > int(after)]
        return jres([m.payload() for m in msgs[:limit]])

    async def create_message(self, request: web.Request) -> web.Response:
        channel = self.channel(request)
        payload, uploads = request[PARSED]
        payload = payload or {}
        self.require(channel, VIEW_CHANNEL | SEND_MESSAGES | (ATTACH_FILES if uploads else 0))
        headers = self.rate_limit(f"send:{channel.id}", self.fake.send_rule)
        fake = self.fake
        nonce = payload.get("nonce")
        if nonce is not None and payload.get("enforce_nonce"):
            earlier = fake.nonce_lookup(channel.id, str(nonce))
            if earlier is not None:
                fake.nonce_hits += 1
                return jres(earlier.payload(), headers=headers)
        msg = self.new_message(channel, fake.bot_user, payload, uploads)
        await fake.store_message(channel, msg)
        return jres(msg.payload(), headers=headers)

    async def get_message(self, request: web.Request) -> web.Response:
        channel = self.channel(request)
        self.require(channel, VIEW_CHANNEL | READ_MESSAGE_HISTORY)
        return jres(self.find_message(channel, request).payload())

    async def edit_message(self, request: web.Request) -> web.Response:
        channel = self.channel(request)
        self.require(channel, VIEW_CHANNEL)
        headers = self.rate_limit(f"edit:{channel.id}", self.fake.edit_rule)
        if self.fake.edit_delay:
            await asyncio.sleep(self.fake.edit_delay)
        msg = self.find_message(channel, request)
        if msg.author.id != self.fake.bot_user.id:
            raise ApiError(403, "Cannot edit a message authored by another user", 50005)
        payload, uploads = request[PARSED]
        self.apply_edit(channel, msg, payload or {}, uploads)
        await self.fake.message_updated(msg)
        return jres(msg.payload(), headers=headers)

    async def delete_message(self, request: web.Request) -> web.Response:
        channel = self.channel(request)
        self.require(channel, VIEW_CHANNEL)
        msg = self.find_message(channel, request)
        await self.fake.remove_message(msg)
        return web.Response(status=204)

    async def cdn(self, request: web.Request) -> web.Response:
        att = self.fake.attachments.get(int(request.match_info["aid"]))
        if att is None or att.filename != request.match_info["filename"] or time.time() > att.expires_at:
            return web.Response(status=404, text="This content is no longer available.")
        guessed = att.content_type or mimetypes.guess_type(att.filename)[0] or "application/octet-stream"
        return web.Response(body=att.data, headers={"Content-Type": guessed})
