"""The fake gateway: HELLO, IDENTIFY → READY + GUILD_CREATE, heartbeats, RESUME with replay, dispatches.

Frames go out zlib-stream compressed when the client asks for ``compress=zlib-stream`` (discord.py 2.7
does unless zstandard is installed), one Z_SYNC_FLUSH per message; otherwise as text frames, which
discord.py also accepts whatever it asked for (``received_message`` only decompresses bytes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

if TYPE_CHECKING:
    from .server import FakeDiscord

log = logging.getLogger(__name__)

OP_DISPATCH, OP_HEARTBEAT, OP_IDENTIFY, OP_RESUME, OP_RECONNECT = 0, 1, 2, 6, 7
OP_REQUEST_MEMBERS, OP_INVALID_SESSION, OP_HELLO, OP_HEARTBEAT_ACK = 8, 9, 10, 11
MAX_REPLAY = 2000


class Connection:
    """One websocket: serialises sends so compressed frames stay in stream order."""

    def __init__(self, ws: web.WebSocketResponse, compress: bool) -> None:
        self.ws = ws
        self._zlib = zlib.compressobj() if compress else None
        self._lock = asyncio.Lock()

    async def send(self, payload: dict[str, Any]) -> None:
        text = json.dumps(payload, separators=(",", ":"))
        async with self._lock:
            if self.ws.closed:
                raise ConnectionResetError("gateway websocket closed")
            if self._zlib is None:
                await self.ws.send_str(text)
            else:
                data = self._zlib.compress(text.encode()) + self._zlib.flush(zlib.Z_SYNC_FLUSH)
                await self.ws.send_bytes(data)


@dataclass
class Session:
    """A gateway session: outlives its websocket so a RESUME can replay what the bot missed."""

    id: str
    shard: tuple[int, int]
    intents: int
    seq: int = 0
    sent: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    conn: Connection | None = None
    identified_at: float = 0.0

    def owns(self, guild_id: int | None) -> bool:
        """Discord's sharding formula; DMs go to shard 0."""
        shard_id, count = self.shard
        return shard_id == 0 if guild_id is None else (guild_id >> 22) % count == shard_id


class Gateway:
    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake
        self.sessions: dict[str, Session] = {}
        self.identifies: list[dict[str, Any]] = []  # IDENTIFY payloads, token removed
        self.resumes: list[dict[str, Any]] = []  # RESUME attempts: session_id, seq, ok
        self.connections: list[dict[str, str]] = []  # query of every websocket opened (v, encoding, compress)
        self.heartbeats = 0
        self.ack_heartbeats = True
        self.heartbeat_interval_ms = 41250
        self._connections: set[Connection] = set()

    # ---- dispatch -------------------------------------------------------------------------------

    def current_session(self, guild_id: int | None) -> Session | None:
        """The newest session whose shard owns ``guild_id`` (DMs go to shard 0)."""
        candidates = [s for s in self.sessions.values() if s.owns(guild_id)]
        return max(candidates, key=lambda s: s.identified_at, default=None)

    async def dispatch(self, event: str, data: dict[str, Any], *, guild_id: int | None = None) -> bool:
        """Send a dispatch to the session owning ``guild_id``; kept for replay if its socket is down.

        Returns whether it went out on a live socket.
        """
        session = self.current_session(guild_id)
        if session is None:
            raise RuntimeError(f"no gateway session has identified (for guild {guild_id}); is the bot running?")
        return await self._send_dispatch(session, event, data)

    async def broadcast(self, event: str, data: dict[str, Any], guild_id: int | None) -> None:
        """Like dispatch, but silently skipped when no session exists (events nobody asked for)."""
        session = self.current_session(guild_id)
        if session is not None:
            await self._send_dispatch(session, event, data)

    async def _send_dispatch(self, session: Session, event: str, data: dict[str, Any]) -> bool:
        session.seq += 1
        payload = {"op": OP_DISPATCH, "t": event, "s": session.seq, "d": data}
        session.sent.append((session.seq, payload))
        del session.sent[:-MAX_REPLAY]
        if session.conn is None:
            return False
        try:
            await session.conn.send(payload)
        except (ConnectionResetError, RuntimeError):
            log.debug("dispatch %s #%s kept for replay: socket closed", event, session.seq)
            return False
        return True

    # ---- control knobs --------------------------------------------------------------------------

    async def disconnect(self, code: int = 4000) -> None:
        """Close every live socket with ``code``; sessions stay resumable."""
        for conn in list(self._connections):
            await conn.ws.close(code=code, message=b"fake disconnect")

    async def invalidate(self, resumable: bool = False) -> None:
        """Send op 9 to every live socket; with resumable=False sessions are also forgotten."""
        for session in list(self.sessions.values()):
            if session.conn is not None:
                with contextlib.suppress(ConnectionResetError, RuntimeError):
                    await session.conn.send({"op": OP_INVALID_SESSION, "d": resumable})
            if not resumable:
                self.sessions.pop(session.id, None)

    async def request_reconnect(self) -> None:
        for session in self.sessions.values():
            if session.conn is not None:
                with contextlib.suppress(ConnectionResetError, RuntimeError):
                    await session.conn.send({"op": OP_RECONNECT, "d": None})

    async def close_all(self) -> None:
        for conn in list(self._connections):
            await conn.ws.close(code=1001, message=b"fake shutting down")

    # ---- websocket handler ----------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=0, autoping=True)
        await ws.prepare(request)
        self.connections.append(dict(request.query))
        conn = Connection(ws, compress=request.query.get("compress") == "zlib-stream")
        self._connections.add(conn)
        session: Session | None = None
        try:
            await conn.send({"op": OP_HELLO, "d": {"heartbeat_interval": self.heartbeat_interval_ms}})
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    if msg.type == WSMsgType.BINARY:
                        await ws.close(code=4002, message=b"Error while decoding payload.")
                    continue
                payload = json.loads(msg.data)
                session = await self._on_op(conn, session, payload) or session
        except ConnectionResetError:
            log.debug("gateway socket reset")
        finally:
            self._connections.discard(conn)
            if session is not None and session.conn is conn:
                session.conn = None
        return ws

    async def _on_op(self, conn: Connection, session: Session | None, payload: dict[str, Any]) -> Session | None:
        op, data = payload.get("op"), payload.get("d")
        if op == OP_HEARTBEAT:
            self.heartbeats += 1
            if self.ack_heartbeats:
                await conn.send({"op": OP_HEARTBEAT_ACK})
            return None
        if op == OP_IDENTIFY:
            return await self._identify(conn, data or {})
        if op == OP_RESUME:
            return await self._resume(conn, data or {})
        if session is None:
            await conn.ws.close(code=4003, message=b"Not authenticated.")
            return None
        if op == OP_REQUEST_MEMBERS:
            await self._members_chunk(session, data or {})
        return None

    async def _identify(self, conn: Connection, data: dict[str, Any]) -> Session | None:
        record = {k: v for k, v in data.items() if k != "token"}
        record["token_ok"] = data.get("token") == self.fake.token
        self.identifies.append(record)
        if not record["token_ok"]:
            await conn.ws.close(code=4004, message=b"Authentication failed.")
            return None
        shard_raw = data.get("shard") or [0, 1]
        session = Session(
            id=secrets.token_hex(16),
            shard=(int(shard_raw[0]), int(shard_raw[1])),
            intents=int(data.get("intents", 0)),
            conn=conn,
            identified_at=asyncio.get_running_loop().time(),
        )
        self.sessions[session.id] = session
        fake = self.fake
        guilds = [g for g in fake.guilds.values() if session.owns(g.id) and g.id not in fake.left_guilds]
        ready = {
            "v": 10,
            "user": fake.bot_user.payload(),
            "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
            "session_id": session.id,
            "session_type": "normal",
            "resume_gateway_url": fake.gateway_url,
            "shard": list(session.shard),
            "application": {"id": str(fake.application_id), "flags": 0},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "user_settings": {},
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "_trace": ["fake-discord"],
        }
        await self._send_dispatch(session, "READY", ready)
        for guild in guilds:
            await self._send_dispatch(session, "GUILD_CREATE", guild.payload(full=True))
        fake.notify()
        return session

    async def _resume(self, conn: Connection, data: dict[str, Any]) -> Session | None:
        session = self.sessions.get(str(data.get("session_id")))
        seq = int(data.get("seq") or 0)
        ok = session is not None and data.get("token") == self.fake.token
        self.resumes.append({"session_id": data.get("session_id"), "seq": seq, "ok": ok})
        if session is None or not ok:
            await conn.send({"op": OP_INVALID_SESSION, "d": False})
            return None
        session.conn = conn
        for sent_seq, payload in list(session.sent):
            if sent_seq > seq:
                await conn.send(payload)
        session.seq += 1
        await conn.send({"op": OP_DISPATCH, "t": "RESUMED", "s": session.seq, "d": {"_trace": ["fake-discord"]}})
        self.fake.notify()
        return session

    async def _members_chunk(self, session: Session, data: dict[str, Any]) -> None:
        guild = self.fake.guilds.get(int(data.get("guild_id", 0)))
        if guild is None:
            return
        wanted: Callable[[int], bool] = lambda uid: True  # noqa: E731 - tiny filter
        if ids := data.get("user_ids"):
            id_set = {int(i) for i in ([ids] if isinstance(ids, (str, int)) else ids)}
            wanted = lambda uid: uid in id_set  # noqa: E731
        members = [m.payload() for uid, m in guild.members.items() if wanted(uid)]
        chunk: dict[str, Any] = {
            "guild_id": str(guild.id),
            "members": members,
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": [],
        }
        if data.get("nonce") is not None:
            chunk["nonce"] = data["nonce"]
        await self._send_dispatch(session, "GUILD_MEMBERS_CHUNK", chunk)
