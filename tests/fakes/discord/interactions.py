"""Interaction side of the fake: INTERACTION_CREATE payloads, the callback route and the token webhooks."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .rest import API_PREFIX, PARSED, ApiError, Rest, jres, unknown_message
from .state import FLAG_EPHEMERAL, FLAG_LOADING, CallbackAttempt, Interaction, Message, WebhookCall

if TYPE_CHECKING:
    from .server import FakeDiscord

log = logging.getLogger(__name__)

CALLBACK_TYPES = {1, 4, 5, 6, 7, 8, 9}


def unknown_interaction() -> ApiError:
    return ApiError(404, "Unknown interaction", 10062)


def invalid_token() -> ApiError:
    return ApiError(401, "Invalid Webhook Token", 50027)


def mirror_modal(components: list[dict[str, Any]], values: dict[str, str]) -> list[dict[str, Any]]:
    """Submit components shaped like the modal's (action rows or labels), carrying ``values``."""
    out: list[dict[str, Any]] = []
    for comp in components:
        if comp.get("type") == 1:
            out.append({"type": 1, "components": mirror_modal(comp.get("components", []), values)})
        elif comp.get("type") == 18 and "component" in comp:
            inner = mirror_modal([comp["component"]], values)
            if inner:
                out.append({"type": 18, "component": inner[0]})
        elif comp.get("type") == 4 and comp.get("custom_id") in values:
            out.append({"type": 4, "custom_id": comp["custom_id"], "value": values[comp["custom_id"]]})
    return out


class InteractionRoutes:
    def __init__(self, fake: FakeDiscord, rest: Rest) -> None:
        self.fake = fake
        self.rest = rest

    def setup(self, app: web.Application) -> None:
        p = API_PREFIX
        r = app.router
        r.add_post(p + "/interactions/{iid}/{token}/callback", self.callback)
        r.add_post(p + "/webhooks/{app}/{token}", self.followup)
        r.add_get(p + "/webhooks/{app}/{token}/messages/{mid}", self.get_webhook_message)
        r.add_patch(p + "/webhooks/{app}/{token}/messages/{mid}", self.edit_webhook_message)
        r.add_delete(p + "/webhooks/{app}/{token}/messages/{mid}", self.delete_webhook_message)

    # ---- callback -------------------------------------------------------------------------------

    async def callback(self, request: web.Request) -> web.Response:
        fake = self.fake
        record = fake.interactions.get(int(request.match_info["iid"]))
        if record is None or record.token != request.match_info["token"]:
            raise unknown_interaction()
        latency = time.monotonic() - record.dispatched_at
        payload, uploads = request[PARSED]
        payload = payload or {}
        cb_type = int(payload.get("type", 0))
        try:
            if record.callback_type is not None:
                raise ApiError(400, "Interaction has already been acknowledged.", 40060)
            if record.expired or latency > fake.callback_deadline:
                raise unknown_interaction()
            if cb_type not in CALLBACK_TYPES:
                raise ApiError(400, "Invalid Form Body", 50035)
            message = await self._apply_callback(record, cb_type, payload.get("data") or {}, uploads)
        except ApiError as err:
            record.callback_attempts.append(CallbackAttempt(cb_type, err.status, latency))
            fake.notify()
            raise
        record.callback_attempts.append(CallbackAttempt(cb_type, 200, latency))
        record.callback_type, record.callback_data, record.callback_latency = cb_type, payload.get("data"), latency
        record.answered.set()
        fake.notify()
        if request.query.get("with_response") not in ("1", "true", "True"):
            return web.Response(status=204)
        body: dict[str, Any] = {
            "interaction": {
                "id": str(record.id),
                "type": record.type,
                "response_message_loading": cb_type == 5,
                "response_message_ephemeral": record.ephemeral,
            }
        }
        if message is not None:
            body["interaction"]["response_message_id"] = str(message.id)
            body["resource"] = {"type": cb_type, "message": message.payload()}
        return jres(body)

    async def _apply_callback(
        self, record: Interaction, cb_type: int, data: dict[str, Any], uploads: list[Any]
    ) -> Message | None:
        fake = self.fake
        channel = fake.channels[record.channel_id]
        ephemeral = bool(int(data.get("flags") or 0) & FLAG_EPHEMERAL)
        if cb_type == 4:
            msg = self.rest.new_message(
                channel, fake.bot_user, data, uploads, webhook_id=fake.application_id, interaction_id=record.id
            )
            record.ephemeral, record.original = ephemeral, msg
            await fake.store_message(channel, msg, visible=not ephemeral)
            return msg
        if cb_type == 5:
            msg = Message(
                id=fake.snowflakes.next(),
                channel_id=channel.id,
                guild_id=channel.guild_id,
                author=fake.bot_user,
                flags=FLAG_LOADING | (FLAG_EPHEMERAL if ephemeral else 0),
                webhook_id=fake.application_id,
                interaction_id=record.id,
            )
            record.ephemeral, record.original = ephemeral, msg
            await fake.store_message(channel, msg, visible=not ephemeral)
            return msg
        if cb_type in (6, 7):
            target = self._component_message(record)
            record.original = target
            if cb_type == 7:
                if target is None:
                    raise ApiError(400, "Interaction has no message to update", 50035)
                self.rest.apply_edit(channel, target, data, uploads)
                await fake.message_updated(target)
                return target
        return None

    def _component_message(self, record: Interaction) -> Message | None:
        raw = record.payload.get("message")
        if raw is None:
            return None
        return self.fake.find_any_message(int(raw["id"]))

    # ---- token webhooks -------------------------------------------------------------------------

    def _record(self, request: web.Request) -> Interaction:
        fake = self.fake
        if int(request.match_info["app"]) != fake.application_id:
            raise ApiError(404, "Unknown Webhook", 10015)
        record = fake.interactions_by_token.get(request.match_info["token"])
        if record is None:
            raise invalid_token()
        if record.expired or time.time() - record.created_at > fake.token_ttl:
            record.expired = True
            raise invalid_token()
        if record.callback_type is None:
            raise ApiError(404, "Unknown Webhook", 10015)
        return record

    def _target(self, record: Interaction, mid: str) -> Message:
        if mid == "@original":
            if record.original is None or record.original.deleted:
                raise unknown_message()
            return record.original
        for msg in record.messages:
            if str(msg.id) == mid and not msg.deleted:
                return msg
        raise unknown_message()

    async def _logged(self, request: web.Request, target: str, action: Any) -> web.Response:
        """Run ``action(record)`` and record the call (also when refused) on the interaction."""
        record: Interaction | None = None
        payload = request[PARSED][0]
        try:
            record = self._record(request)
            response: web.Response = await action(record)
        except ApiError as err:
            token_record = record or self.fake.interactions_by_token.get(request.match_info["token"])
            if token_record is not None:
                token_record.webhook_calls.append(WebhookCall(request.method, target, err.status, payload))
                self.fake.notify()
            raise
        record.webhook_calls.append(WebhookCall(request.method, target, response.status, payload))
        self.fake.notify()
        return response

    async def followup(self, request: web.Request) -> web.Response:
        async def action(record: Interaction) -> web.Response:
            fake = self.fake
            channel = fake.channels[record.channel_id]
            payload, uploads = request[PARSED]
            payload = payload or {}
            original = record.original
            if original is not None and original.flags & FLAG_LOADING and record.callback_type == 5:
                # The first follow-up after a "thinking" defer replaces the placeholder.
                self.rest.apply_edit(channel, original, payload, uploads)
                original.flags &= ~FLAG_LOADING
                record.followups.append(original)
                if not original.ephemeral:
                    await fake.message_updated(original)
                msg = original
            else:
                msg = self.rest.new_message(
                    channel, fake.bot_user, payload, uploads, webhook_id=fake.application_id, interaction_id=record.id
                )
                record.followups.append(msg)
                await fake.store_message(channel, msg, visible=not msg.ephemeral)
            if request.query.get("wait") in ("1", "true", "True"):
                return jres(msg.payload())
            return web.Response(status=204)

        return await self._logged(request, "followup", action)

    async def get_webhook_message(self, request: web.Request) -> web.Response:
        async def action(record: Interaction) -> web.Response:
            return jres(self._target(record, request.match_info["mid"]).payload())

        return await self._logged(request, request.match_info["mid"], action)

    async def edit_webhook_message(self, request: web.Request) -> web.Response:
        async def action(record: Interaction) -> web.Response:
            msg = self._target(record, request.match_info["mid"])
            payload, uploads = request[PARSED]
            self.rest.apply_edit(self.fake.channels[record.channel_id], msg, payload or {}, uploads)
            msg.flags &= ~FLAG_LOADING
            if not msg.ephemeral:
                await self.fake.message_updated(msg)
            return jres(msg.payload())

        return await self._logged(request, request.match_info["mid"], action)

    async def delete_webhook_message(self, request: web.Request) -> web.Response:
        async def action(record: Interaction) -> web.Response:
            await self.fake.remove_message(self._target(record, request.match_info["mid"]))
            return web.Response(status=204)

        return await self._logged(request, request.match_info["mid"], action)
