"""A fake Discord (REST + gateway) for end-to-end tests with the real discord.py; see server.py."""

from .server import FakeDiscord
from .state import (
    ADMINISTRATOR,
    ATTACH_FILES,
    SEND_MESSAGES,
    Attachment,
    Channel,
    Guild,
    Interaction,
    Message,
    RateLimitRule,
    RequestRecord,
    User,
)

__all__ = [
    "ADMINISTRATOR",
    "ATTACH_FILES",
    "SEND_MESSAGES",
    "Attachment",
    "Channel",
    "FakeDiscord",
    "Guild",
    "Interaction",
    "Message",
    "RateLimitRule",
    "RequestRecord",
    "User",
]
