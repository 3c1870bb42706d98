"""Interactions the fake sends to the bot: slash commands, component clicks, modal submits.

A mixin of FakeDiscord (kept apart to keep files short); see server.py for the public API.
"""

from __future__ import annotations

import secrets
import time
from typing import TYPE_CHECKING, Any

from .interactions import mirror_modal
from .state import ADMINISTRATOR, BOT_PERMISSIONS, Interaction, Message, User

if TYPE_CHECKING:
    from .gateway import Gateway
    from .state import Channel, Guild, Snowflakes

OPTION_TYPES: dict[type, int] = {str: 3, int: 4, bool: 5, float: 10}


class InteractionSender:
    if TYPE_CHECKING:
        application_id: int
        bot_user: User
        user: User
        guild: Guild
        users: dict[int, User]
        guilds: dict[int, Guild]
        channels: dict[int, Channel]
        snowflakes: Snowflakes
        gateway: Gateway
        synced_commands: dict[int | None, list[dict[str, Any]]]
        interactions: dict[int, Interaction]
        interactions_by_token: dict[str, Interaction]

        def dm_channel(self, user_id: int) -> Channel: ...
        def find_any_message(self, message_id: int) -> Message | None: ...
        def upload_limit_for(self, guild_id: int | None) -> int: ...

    # ---- interactions ---------------------------------------------------------------------------

    def find_command(self, name: str, guild_id: int | None) -> dict[str, Any] | None:
        for key in (guild_id, None) if guild_id is not None else (None,):
            for cmd in self.synced_commands.get(key, []):
                if cmd["name"] == name and cmd.get("type", 1) == 1:
                    return cmd
        return None

    def _options(self, cmd: dict[str, Any] | None, options: Any, resolved: dict[str, Any]) -> list[dict[str, Any]]:
        if options is None:
            return []
        if isinstance(options, list):
            return options
        defs = {o["name"]: o for o in (cmd or {}).get("options", [])}
        out = []
        for name, value in options.items():
            if isinstance(value, dict) and "filename" in value:  # an upload_user_attachment payload
                resolved.setdefault("attachments", {})[value["id"]] = value
                out.append({"name": name, "type": 11, "value": value["id"]})
                continue
            if isinstance(value, User):
                out.append({"name": name, "type": 6, "value": str(value.id)})
                continue
            kind = defs.get(name, {}).get("type") or OPTION_TYPES.get(type(value), 3)
            out.append({"name": name, "type": kind, "value": value})
        return out

    async def send_interaction(
        self,
        *,
        command: str,
        options: list[dict[str, Any]] | dict[str, Any] | None = None,
        user_id: int | None = None,
        guild_id: int | None = None,
        channel_id: int | None = None,
        attachments: dict[str, dict[str, Any]] | list[dict[str, Any]] | None = None,
        attachment_size_limit: int | None = None,
        permissions: int | None = None,
        locale: str = "en-US",
        dm: bool = False,
    ) -> Interaction:
        """Dispatch a slash command (type 2) as ``user_id`` (default: alice) and return its record."""
        guild_id = None if dm else (guild_id or self.guild.id)
        cmd = self.find_command(command, guild_id)
        resolved: dict[str, Any] = {}
        if attachments:
            items = attachments.values() if isinstance(attachments, dict) else attachments
            resolved["attachments"] = {str(a["id"]): a for a in items}
        opts = self._options(cmd, options, resolved)
        users = [self.users[int(o["value"])] for o in opts if o.get("type") == 6]
        if users:
            resolved["users"] = {str(u.id): u.payload() for u in users}
            if guild_id is not None:
                guild = self.guilds[guild_id]
                resolved["members"] = {
                    str(u.id): {k: v for k, v in guild.members[u.id].payload().items() if k != "user"}
                    for u in users
                    if u.id in guild.members
                }
        data: dict[str, Any] = {
            "id": cmd["id"] if cmd else str(self.snowflakes.next()),
            "name": command,
            "type": 1,
            "options": opts,
        }
        if resolved:
            data["resolved"] = resolved
        if cmd is not None and cmd.get("guild_id"):
            data["guild_id"] = cmd["guild_id"]
        uid = user_id or self.user.id
        if cmd is not None and guild_id is not None and cmd.get("default_member_permissions") is not None:
            needed = int(cmd["default_member_permissions"])
            have = permissions if permissions is not None else self.guilds[guild_id].base_permissions(uid)
            if have & needed != needed and not have & ADMINISTRATOR:
                raise PermissionError(f"Discord would not show /{command} to user {uid} (needs {needed})")
        return await self._dispatch_interaction(
            2, data, uid, guild_id, channel_id, permissions, locale, attachment_size_limit, dm=dm
        )

    async def send_autocomplete(
        self,
        *,
        command: str,
        focused: str,
        options: dict[str, Any] | None = None,
        user_id: int | None = None,
        guild_id: int | None = None,
        channel_id: int | None = None,
    ) -> Interaction:
        """What a client sends while a member types option ``focused`` (type 4). The bot answers with
        callback type 8 and ``callback_data = {"choices": [...]}``."""
        guild_id = guild_id or self.guild.id
        cmd = self.find_command(command, guild_id)
        opts = self._options(cmd, options or {}, {})
        for opt in opts:
            if opt["name"] == focused:
                opt["focused"] = True
                opt["type"] = 3 if isinstance(opt.get("value"), str) else opt["type"]
        data: dict[str, Any] = {
            "id": cmd["id"] if cmd else str(self.snowflakes.next()),
            "name": command,
            "type": 1,
            "options": opts,
        }
        uid = user_id or self.user.id
        return await self._dispatch_interaction(4, data, uid, guild_id, channel_id, None, "en-US", None)

    async def send_component(
        self,
        message_id: int,
        custom_id: str,
        *,
        component_type: int = 2,
        values: list[str] | None = None,
        user_id: int | None = None,
        channel_id: int | None = None,
        permissions: int | None = None,
    ) -> Interaction:
        """Click a button (component_type 2) or pick select ``values`` on a stored message."""
        msg = self.find_any_message(message_id)
        if msg is None:
            raise KeyError(f"no message {message_id} to click on")
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": component_type}
        if values is not None:
            data["values"] = values
        return await self._dispatch_interaction(
            3,
            data,
            user_id or self.user.id,
            msg.guild_id,
            channel_id or msg.channel_id,
            permissions,
            "en-US",
            None,
            message=msg,
            dm=msg.guild_id is None,
        )

    async def send_modal_submit(
        self,
        custom_id: str,
        values: dict[str, str],
        *,
        modal: dict[str, Any] | None = None,
        user_id: int | None = None,
        guild_id: int | None = None,
        channel_id: int | None = None,
    ) -> Interaction:
        """Submit a modal. Pass the opening interaction's ``modal`` to mirror its layout (labels/rows)."""
        if modal is not None:
            components = mirror_modal(modal.get("components", []), values)
        else:
            components = [
                {"type": 1, "components": [{"type": 4, "custom_id": k, "value": v}]} for k, v in values.items()
            ]
        data = {"custom_id": custom_id, "components": components}
        return await self._dispatch_interaction(
            5, data, user_id or self.user.id, guild_id or self.guild.id, channel_id, None, "en-US", None
        )

    async def _dispatch_interaction(
        self,
        itype: int,
        data: dict[str, Any],
        user_id: int,
        guild_id: int | None,
        channel_id: int | None,
        permissions: int | None,
        locale: str,
        attachment_size_limit: int | None,
        *,
        message: Message | None = None,
        dm: bool = False,
    ) -> Interaction:
        user = self.users[user_id]
        if dm or guild_id is None:
            channel = self.channels[channel_id] if channel_id else self.dm_channel(user_id)
            guild = None
        else:
            guild = self.guilds[guild_id]
            channel = self.channels[channel_id] if channel_id else guild.text_channels()[0]
        token = f"aW50ZXJhY3Rpb24{secrets.token_urlsafe(48)}"
        iid = self.snowflakes.next()
        limit = attachment_size_limit if attachment_size_limit is not None else self.upload_limit_for(guild_id)
        channel_payload = channel.payload()
        payload: dict[str, Any] = {
            "id": str(iid),
            "application_id": str(self.application_id),
            "type": itype,
            "data": data,
            "channel": channel_payload,
            "channel_id": str(channel.id),
            "token": token,
            "version": 1,
            "locale": locale,
            "entitlements": [],
            "attachment_size_limit": limit,
        }
        if guild is not None:
            member = guild.members[user_id]
            perms = permissions if permissions is not None else guild.channel_permissions(user_id, channel)
            channel_payload["permissions"] = str(perms)
            bot_perms = guild.channel_permissions(self.bot_user.id, channel)
            payload.update(
                guild_id=str(guild.id),
                guild={"id": str(guild.id), "locale": "en-US", "features": []},
                guild_locale="en-US",
                member={**member.payload(), "permissions": str(perms)},
                app_permissions=str(bot_perms),
                context=0,
                authorizing_integration_owners={"0": str(guild.id)},
            )
        else:
            payload.update(
                user=user.payload(),
                app_permissions=str(BOT_PERMISSIONS),
                context=1,
                authorizing_integration_owners={"1": str(user.id)},
            )
        if message is not None:
            payload["message"] = message.payload()
        record = Interaction(
            id=iid,
            token=token,
            type=itype,
            payload=payload,
            guild_id=guild.id if guild else None,
            channel_id=channel.id,
            user_id=user_id,
        )
        self.interactions[iid] = record
        self.interactions_by_token[token] = record
        record.dispatched_at = time.monotonic()
        await self.gateway.dispatch("INTERACTION_CREATE", payload, guild_id=record.guild_id)
        return record
