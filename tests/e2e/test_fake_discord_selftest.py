"""Self-test of the fake Discord: the real discord.py 2.7, in a real process, against it.

One bot process serves the whole module (module-scoped loop and fixtures); tests run in file order and
each uses fresh interactions. The gateway test comes last because it disturbs the connection.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from tests.e2e.harness import BotProcess
from tests.fakes.discord import FakeDiscord, RateLimitRule

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(60)]

MODULE = "tests.e2e.selftest_bot"


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as fake:
        # Tight enough that 8 quick edits overrun it, short enough to keep the test fast.
        fake.edit_rule = RateLimitRule(limit=3, per=0.6)
        yield fake


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def bot(fake: FakeDiscord) -> AsyncIterator[BotProcess]:
    env = {"SELFTEST_GUILD_ID": str(fake.guild.id), "SELFTEST_HOLD": "1.0", "SELFTEST_SLOW": "0.6"}
    async with BotProcess.for_fake(fake, module=MODULE, extra_env=env) as proc:
        await proc.wait_ready(synced=True)
        yield proc


@pytest_asyncio.fixture(loop_scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_wrong_token_makes_the_process_exit(fake: FakeDiscord) -> None:
    bad = BotProcess(
        {**fake.bot_env(), "DISCORD_TOKEN": "not-the-token", "SELFTEST_GUILD_ID": str(fake.guild.id)}, module=MODULE
    )
    await bad.start()
    code = await bad.wait_exit(timeout=20)
    assert code == 3, bad.log_tail()
    assert "login failed" in bad.log_text()
    refused = [r for r in fake.requests_to("/users/@me", "GET") if r.status == 401]
    assert refused, "the fake never refused the token"
    assert fake.ready_count == 0


async def test_login_connect_and_sync(fake: FakeDiscord, bot: BotProcess) -> None:
    assert [r.status for r in fake.requests_to("/users/@me", "GET")][-1] == 200
    assert fake.requests_to("/oauth2/applications/@me", "GET")[-1].status == 200
    (cmds,) = [v for k, v in fake.synced_commands.items() if k == fake.guild.id]
    assert {c["name"] for c in cmds} == {"ping", "hello", "form", "hold", "slow", "upload"}
    ping = next(c for c in cmds if c["name"] == "ping")
    assert [(o["name"], o["type"]) for o in ping["options"]] == [("text", 3), ("image", 11)]
    assert fake.gateway.connections[-1] == {"v": "10", "encoding": "json", "compress": "zlib-stream"}
    identify = fake.gateway.identifies[-1]
    assert identify["token_ok"] and identify["intents"] > 0
    assert "on_ready: guild=Test Guild filesize_limit=10485760" in await _log_line(fake, bot, "on_ready")


async def _log_line(fake: FakeDiscord, bot: BotProcess, needle: str) -> str:
    def found() -> str:
        return next((line for line in bot.log_text().splitlines() if needle in line), "")

    return await fake.wait_for(found, timeout=10, what=f"log line {needle!r}")


async def test_ping_defers_edits_uploads_once_and_follows_up(fake: FakeDiscord, bot: BotProcess) -> None:
    image = fake.upload_user_attachment(b"\x89PNG\r\n\x1a\n" + b"0" * 100, "cat.png", width=4, height=4)
    before_429 = fake.count_429
    ia = await fake.send_interaction(command="ping", options={"text": "hey", "image": image})

    assert await ia.wait_callback(timeout=3) == 5
    assert ia.callback_latency is not None and ia.callback_latency < 3
    assert not ia.ephemeral
    assert ia.original is not None and ia.original.flags & 128  # "thinking" placeholder

    await fake.wait_for(lambda: ia.followups, timeout=15, what="the done follow-up")
    done = ia.followups[0].content
    assert done.startswith("done ")
    assert "guild_limit=10485760 ia_limit=10485760 image=108" in done
    first_id, second_id = done.split()[1:3]
    assert first_id == second_id, "the same nonce made two messages"
    assert ia.original.content == done and not ia.original.flags & 128  # the follow-up replaced "thinking"

    progress = fake.find_message(lambda m: m.content.startswith("progress"))
    assert progress is not None
    assert progress.content == "progress 8" and progress.edit_count == 8
    assert progress.components and progress.components[0]["components"][0]["custom_id"] == "selftest:again"
    assert fake.count_429 > before_429, "no 429 happened: the edit bucket was never hit"
    edits = fake.requests_to(f"/channels/{fake.channel.id}/messages/{progress.id}", "PATCH")
    assert sum(r.status == 200 for r in edits) == 8
    assert all(r.status in (200, 429) for r in edits)

    results = [m for m in fake.messages() if m.content == "result"]
    assert len(results) == 1 and fake.nonce_hits >= 1
    assert results[0].attachments[0].filename == "result.bin" and results[0].attachments[0].size == 1024
    assert results[0].nonce is not None
    uploads = [r for r in fake.requests_to(f"/channels/{fake.channel.id}/messages", "POST") if r.files]
    assert len(uploads) == 2 and all(r.json["enforce_nonce"] for r in uploads)


async def test_button_click(fake: FakeDiscord, bot: BotProcess) -> None:
    progress = fake.find_message(lambda m: m.content.startswith("progress"))
    assert progress is not None
    click = await fake.send_component(progress.id, "selftest:again")
    assert await click.wait_callback(timeout=3) == 4
    assert click.original is not None and click.original.content == f"clicked by {fake.user.id}"


async def test_modal_round_trip(fake: FakeDiscord, bot: BotProcess) -> None:
    opened = await fake.send_interaction(command="form")
    assert await opened.wait_callback(timeout=3) == 9
    assert opened.modal is not None and opened.modal["title"] == "Your name"
    submit = await fake.send_modal_submit(opened.modal["custom_id"], {"selftest:name": "Ada"}, modal=opened.modal)
    assert await submit.wait_callback(timeout=3) == 4
    assert submit.original is not None and submit.original.content == "hello Ada"


async def test_late_defer_is_refused(fake: FakeDiscord, bot: BotProcess) -> None:
    fake.callback_deadline = 0.3
    try:
        ia = await fake.send_interaction(command="slow")
        msg = await fake.wait_for(lambda: fake.find_message(lambda m: m.content.startswith("defer failed")), 5)
    finally:
        fake.callback_deadline = 3.0
    assert msg.content == "defer failed 404 10062"
    assert ia.callback_type is None
    assert [(a.type, a.status) for a in ia.callback_attempts] == [(5, 404)]
    assert ia.callback_attempts[0].latency > 0.3


async def test_oversized_upload_gets_413(fake: FakeDiscord, bot: BotProcess) -> None:
    fake.upload_limit = 1000
    try:
        ia = await fake.send_interaction(command="upload", options={"size": 2000})
        await fake.wait_for(lambda: ia.followups, 5)
        assert ia.followups[0].content == "upload failed 413 40005"
        ok = await fake.send_interaction(command="upload", options={"size": 1000})
        await fake.wait_for(lambda: ok.followups, 5)
        assert ok.followups[0].content == "upload ok"
    finally:
        fake.upload_limit = 10 * 1024 * 1024


async def test_followup_after_token_expiry_fails(fake: FakeDiscord, bot: BotProcess) -> None:
    ia = await fake.send_interaction(command="hold")
    assert await ia.wait_callback(timeout=3) == 5
    fake.expire_token(ia.token)
    msg = await fake.wait_for(lambda: fake.find_message(lambda m: m.content.startswith("followup failed")), 5)
    assert msg.content == "followup failed 401 50027"
    assert [(c.method, c.status) for c in ia.webhook_calls] == [("POST", 401)]
    assert ia.followups == []


async def test_gateway_disconnect_resumes_and_replays(fake: FakeDiscord, bot: BotProcess) -> None:
    resumes_before = len(fake.gateway.resumes)
    await fake.disconnect_gateway()
    # Dispatched while the socket is down: kept by the session and replayed on RESUME.
    ia = await fake.send_interaction(command="hello")
    assert await ia.wait_callback(timeout=5) == 4
    assert ia.ephemeral and ia.original is not None and ia.original.content == "hi"
    assert [r["ok"] for r in fake.gateway.resumes[resumes_before:]] == [True]
    await _log_line(fake, bot, "resumed")

    # A session the gateway forgets: discord.py must IDENTIFY again and keep working.
    ready_before = fake.ready_count
    await fake.invalidate_session()
    await fake.wait_for(lambda: fake.ready_count > ready_before, 10, what="a fresh IDENTIFY")
    again = await fake.send_interaction(command="hello")
    assert await again.wait_callback(timeout=5) == 4
    assert bot.running


# ---- the fake alone, over raw HTTP and a raw websocket (no bot process) ---------------------------------


class RawGateway:
    """A minimal gateway client: zlib-stream frames in, JSON out."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.inflate = zlib.decompressobj()

    async def recv(self) -> dict[str, Any]:
        msg = await self.ws.receive(timeout=5)
        assert msg.type is aiohttp.WSMsgType.BINARY, msg
        assert msg.data.endswith(b"\x00\x00\xff\xff")
        return json.loads(self.inflate.decompress(msg.data))

    async def recv_event(self, name: str) -> dict[str, Any]:
        while (payload := await self.recv()).get("t") != name:
            pass
        return payload


async def connect(session: aiohttp.ClientSession, fake: FakeDiscord) -> RawGateway:
    ws = await session.ws_connect(f"{fake.gateway_url}?v=10&encoding=json&compress=zlib-stream")
    return RawGateway(ws)


async def test_raw_gateway_identify_heartbeat_resume(http: aiohttp.ClientSession) -> None:
    async with FakeDiscord() as fake:
        gw = await connect(http, fake)
        assert (await gw.recv())["op"] == 10
        await gw.ws.send_json({"op": 1, "d": None})
        assert (await gw.recv())["op"] == 11
        await gw.ws.send_json({"op": 2, "d": {"token": fake.token, "intents": 513, "properties": {}}})
        ready = await gw.recv()
        assert (ready["t"], ready["s"]) == ("READY", 1)
        assert ready["d"]["resume_gateway_url"] == fake.gateway_url
        guild = (await gw.recv())["d"]
        assert guild["id"] == str(fake.guild.id) and guild["premium_tier"] == 0
        assert {c["name"] for c in guild["channels"]} == {"general", "videos"}
        assert str(fake.bot_user.id) in {m["user"]["id"] for m in guild["members"]}

        ia = await fake.send_interaction(command="nothing", options={"n": 3})
        event = await gw.recv_event("INTERACTION_CREATE")
        data = event["d"]
        assert data["id"] == str(ia.id) and data["type"] == 2 and data["version"] == 1
        assert data["data"]["options"] == [{"name": "n", "type": 4, "value": 3}]
        assert data["attachment_size_limit"] == 10 * 1024 * 1024
        assert data["member"]["user"]["id"] == str(fake.user.id) and data["member"]["permissions"]

        # Socket drops; an event sent meanwhile is replayed after RESUME.
        await fake.disconnect_gateway()
        await fake.send_interaction(command="missed")
        gw2 = await connect(http, fake)
        await gw2.recv()
        resume = {"token": fake.token, "session_id": ready["d"]["session_id"], "seq": event["s"]}
        await gw2.ws.send_json({"op": 6, "d": resume})
        replayed = await gw2.recv()
        assert (replayed["t"], replayed["d"]["data"]["name"]) == ("INTERACTION_CREATE", "missed")
        assert (await gw2.recv())["t"] == "RESUMED"

        gw3 = await connect(http, fake)
        await gw3.recv()
        await gw3.ws.send_json({"op": 2, "d": {"token": "wrong", "properties": {}}})
        closed = await gw3.ws.receive(timeout=5)
        assert closed.type is aiohttp.WSMsgType.CLOSE and closed.data == 4004
        await gw2.ws.close()


async def test_raw_interaction_callback_rules(http: aiohttp.ClientSession) -> None:
    async with FakeDiscord() as fake:
        gw = await connect(http, fake)
        await gw.recv()
        await gw.ws.send_json({"op": 2, "d": {"token": fake.token, "properties": {}}})
        await gw.recv_event("READY")
        ia = await fake.send_interaction(command="x")
        assert (await gw.recv_event("INTERACTION_CREATE"))["d"]["member"]["user"]["id"] == str(fake.user.id)
        hook = f"{fake.api_base}/webhooks/{fake.application_id}/{ia.token}"
        async with http.post(hook, json={"content": "too early"}) as resp:
            assert (resp.status, (await resp.json())["code"]) == (404, 10015)
        callback = f"{fake.api_base}/interactions/{ia.id}/{ia.token}/callback?with_response=1"
        async with http.post(callback, json={"type": 5, "data": {"flags": 64}}) as resp:
            assert resp.status == 200 and resp.headers["Content-Type"] == "application/json"
            body = await resp.json()
        assert body["interaction"]["response_message_loading"] and body["interaction"]["response_message_ephemeral"]
        async with http.post(callback, json={"type": 4, "data": {"content": "x"}}) as resp:
            assert (resp.status, (await resp.json())["code"]) == (400, 40060)
        async with http.patch(f"{hook}/messages/@original", json={"content": "edited"}) as resp:
            assert resp.status == 200
        assert ia.original is not None and ia.original.content == "edited" and ia.ephemeral
        assert fake.messages() == []  # ephemeral: not in the channel
        fake.expire_all_tokens()
        async with http.post(f"{hook}?wait=true", json={"content": "late"}) as resp:
            assert (resp.status, (await resp.json())["code"]) == (401, 50027)
        assert [(c.method, c.status) for c in ia.webhook_calls] == [("POST", 404), ("PATCH", 200), ("POST", 401)]

        # A DM command answered with an ephemeral message carrying a button, then that button clicked.
        dm = await fake.send_interaction(command="x", dm=True)
        dm_event = (await gw.recv_event("INTERACTION_CREATE"))["d"]
        assert dm_event["user"]["id"] == str(fake.user.id) and "member" not in dm_event
        assert dm_event["channel"]["type"] == 1 and dm_event["context"] == 1
        button = {"type": 1, "components": [{"type": 2, "style": 1, "label": "ok", "custom_id": "b"}]}
        reply = {"type": 4, "data": {"content": "pick", "flags": 64, "components": [button]}}
        async with http.post(f"{fake.api_base}/interactions/{dm.id}/{dm.token}/callback", json=reply) as resp:
            assert resp.status == 204  # no with_response: no body
        assert dm.original is not None and dm.original.ephemeral
        click = await fake.send_component(dm.original.id, "b")
        click_event = (await gw.recv_event("INTERACTION_CREATE"))["d"]
        assert click_event["type"] == 3 and click_event["message"]["id"] == str(dm.original.id)
        assert click_event["data"] == {"custom_id": "b", "component_type": 2} and click.guild_id is None


async def test_raw_rest_messages_permissions_faults(http: aiohttp.ClientSession) -> None:
    async with FakeDiscord() as fake:
        auth = {"Authorization": f"Bot {fake.token}"}
        api, cid = fake.api_base, fake.channel.id
        async with http.get(f"{api}/users/@me", headers={"Authorization": "Bot nope"}) as resp:
            assert resp.status == 401 and resp.headers["Content-Type"] == "application/json"
            assert await resp.json() == {"message": "401: Unauthorized", "code": 0}

        form = aiohttp.FormData(quote_fields=False)
        form.add_field("payload_json", json.dumps({"content": "a", "attachments": [{"id": 0, "filename": "a.txt"}]}))
        form.add_field("files[0]", b"hello", filename="a.txt", content_type="application/octet-stream")
        async with http.post(f"{api}/channels/{cid}/messages", data=form, headers=auth) as resp:
            msg = await resp.json()
        att = msg["attachments"][0]
        async with http.get(att["url"]) as resp:
            assert await resp.read() == b"hello"
        fake.expire_attachment(att["id"])
        async with http.get(att["url"]) as resp:
            assert resp.status == 404

        form = aiohttp.FormData(quote_fields=False)
        kept = {"content": "b", "attachments": [{"id": att["id"]}, {"id": 0, "filename": "b.txt"}]}
        form.add_field("payload_json", json.dumps(kept))
        form.add_field("files[0]", b"bee", filename="b.txt")
        async with http.patch(f"{api}/channels/{cid}/messages/{msg['id']}", data=form, headers=auth) as resp:
            edited = await resp.json()
        assert [a["filename"] for a in edited["attachments"]] == ["a.txt", "b.txt"]
        async with http.patch(
            f"{api}/channels/{cid}/messages/{msg['id']}", json={"attachments": []}, headers=auth
        ) as resp:
            assert (await resp.json())["attachments"] == []
        stored = fake.messages()[0]
        assert stored.content == "b" and stored.edit_count == 2

        async with http.delete(f"{api}/channels/{cid}/messages/{msg['id']}", headers=auth) as resp:
            assert resp.status == 204
        async with http.patch(
            f"{api}/channels/{cid}/messages/{msg['id']}", json={"content": "c"}, headers=auth
        ) as resp:
            assert (resp.status, await resp.json()) == (404, {"message": "Unknown Message", "code": 10008})

        fake.forbid(cid)
        async with http.post(f"{api}/channels/{cid}/messages", json={"content": "x"}, headers=auth) as resp:
            assert (resp.status, (await resp.json())["code"]) == (403, 50013)
        fake.allow(cid)
        fake.inject(500, "oops", path_contains="/messages", method="POST")
        fake.inject(429, path_contains="/messages", method="POST")
        for status in (500, 429, 200):
            async with http.post(f"{api}/channels/{cid}/messages", json={"content": "x"}, headers=auth) as r:
                assert r.status == status
                if status == 429:
                    assert r.headers["Via"] and (await r.json())["retry_after"] > 0
        async with http.post(f"{api}/channels/{cid}/messages", json={"content": ""}, headers=auth) as resp:
            assert (resp.status, (await resp.json())["code"]) == (400, 50006)

        await fake.delete_channel(cid)
        async with http.get(f"{api}/channels/{cid}/messages/1", headers=auth) as resp:
            assert (resp.status, (await resp.json())["code"]) == (404, 10003)
        async with http.get(f"{api}/no/such/route", headers=auth) as resp:
            assert (resp.status, fake.requests[-1].status) == (404, 404)
