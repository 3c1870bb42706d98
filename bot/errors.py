"""The typed error tree. Every error carries two texts, decided here and nowhere else:

* ``user_message``: a short, polite sentence safe to show in Discord or the terminal;
* ``detail``: what an operator needs in the log (provider message, HTTP status, ...).

Neither ever contains an API key: ``detail`` is scrubbed with :func:`redact` by whoever builds it
from provider text, and user messages are fixed sentences or built from validated input only.
"""

from __future__ import annotations

from collections.abc import Iterable


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """Replace every secret value that occurs in ``text`` by ``***``."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


class BotError(Exception):
    """Base of every error the bot expects. ``str(err)`` is the operator detail."""

    user_message: str = "Something went wrong. Please try again later."

    def __init__(self, detail: str = "", *, user_message: str | None = None) -> None:
        super().__init__(detail or self.user_message)
        self.detail = detail or self.user_message
        if user_message is not None:
            self.user_message = user_message


class ConfigError(BotError):
    """A setting is missing or malformed; start-up stops with this one line."""

    user_message = "The bot is misconfigured."


class InvalidRequest(BotError):
    """The user asked for something we (or the provider) cannot do. The message says what is allowed."""

    user_message = "That request is not valid."

    def __init__(self, user_message: str, detail: str = "") -> None:
        super().__init__(detail or user_message, user_message=user_message)


class Refused(BotError):
    """A polite no to something a member clicked or asked for: the sentence is the whole story."""

    def __init__(self, user_message: str) -> None:
        super().__init__(user_message, user_message=user_message)


class MediaError(InvalidRequest):
    """A reference image or video is unusable (not an image, too big, a decompression bomb...)."""


class InsufficientCredits(BotError):
    """The requester cannot afford the job; raised before anything reaches the provider."""

    user_message = "You do not have enough credits for that."


class BudgetExhausted(InsufficientCredits):
    """The operator's daily cap for one server (SERVER_DAILY_CREDITS) or for the whole bot
    (GLOBAL_DAILY_CREDITS) would be passed; nothing is charged."""

    user_message = "The video budget for today is used up. It resets at 00:00 UTC."


# --- provider errors -------------------------------------------------------------------------


class ProviderError(BotError):
    """Anything a video provider answered (or failed to answer).

    ``retryable`` says whether the HTTP layer may try the same request again.
    ``refundable`` says whether the requester gets their credits back (always, for now:
    a failed video is never the user's cost).
    """

    retryable: bool = False
    retry_after: float | None = None
    """The server's own requested delay (``Retry-After``, ``retry-after-ms``), when it sent one."""
    user_message = "The video provider returned an error. Your credits were refunded."

    def __init__(self, detail: str = "", *, user_message: str | None = None, status: int | None = None) -> None:
        super().__init__(detail, user_message=user_message)
        self.status = status


class ProviderRequestRejected(ProviderError):
    """The provider refused the request's parameters (HTTP 400/404/422 on submit)."""

    user_message = "The video provider rejected the request's settings. Your credits were refunded."


class WorkflowRejected(ProviderRequestRejected):
    """A self-hosted server (ComfyUI) refused the operator's workflow: a setup problem, never the user's."""

    user_message = (
        "The bot's video server could not run its workflow (a server-side setup problem). "
        "Your credits were refunded; please tell the server's admins."
    )


class AuthenticationFailed(ProviderError):
    """The provider rejected our API key. An operator problem, never the user's."""

    user_message = (
        "The bot's video provider account is not set up correctly (a server-side problem). "
        "Your credits were refunded; please tell the server's admins."
    )


class ProviderOutOfCredits(ProviderError):
    """The operator's provider account has run dry (Segmind 406, Sora2API 402)."""

    user_message = (
        "The bot's video provider account is out of credits (a server-side problem, not yours). "
        "Your credits were refunded; please tell the server's admins."
    )


class RateLimited(ProviderError):
    """429 from the provider after our own retries were exhausted."""

    retryable = True
    user_message = "The video provider is busy right now. Your credits were refunded; please try again shortly."

    def __init__(self, detail: str = "", *, retry_after: float | None = None, status: int | None = 429) -> None:
        super().__init__(detail, status=status)
        self.retry_after = retry_after


class ModerationRejected(ProviderError):
    """The provider's safety system refused the prompt, the image or the result."""

    user_message = "The video provider's safety system rejected this request. Your credits were refunded."

    def __init__(self, detail: str = "", *, stage: str | None = None, status: int | None = None) -> None:
        message = None
        if stage:
            message = f"The video provider's safety system rejected the {stage}. Your credits were refunded."
        super().__init__(detail, user_message=message, status=status)
        self.stage = stage


class ModelUnavailable(ProviderError):
    """The provider says the model no longer exists (HTTP 404 on submit, "model not found")."""

    user_message = (
        "This model is no longer offered by the video provider. "
        "Your credits were refunded; please choose another model."
    )


class GenerationFailed(ProviderError):
    """The provider accepted the job but could not make the video."""

    user_message = "The video provider could not make this video. Your credits were refunded."


class ProviderUnavailable(ProviderError):
    """Connection errors and 5xx that outlasted our retries."""

    retryable = True
    user_message = "The video provider is unavailable right now. Your credits were refunded; please try later."


class ProviderTimeout(ProviderError):
    """The job did not finish within our deadline."""

    user_message = "The video took too long and was abandoned. Your credits were refunded."


class ResultTooLarge(ProviderError):
    """The provider's result is bigger than our download cap."""

    user_message = "The finished video was too large to download. Your credits were refunded."


class UnsafeResultUrl(ProviderError):
    """The provider's result link (or a redirect after it) points somewhere the bot will not go:
    a private or local address, plain http off the provider's own origin, too many redirects."""

    user_message = (
        "The video provider sent a result link the bot will not open (it points to a private or unsafe "
        "address). Your credits were refunded."
    )


class ResultNotAVideo(ProviderError):
    """The provider's result is not a video the bot will post (not MP4/MOV/WebM, beyond the size,
    length or frame caps, or too costly to read)."""

    user_message = "The video provider returned a file that is not a playable video. Your credits were refunded."


class JobNotResumable(ProviderError):
    """A job whose provider cannot be asked again after a restart (segmind-sync, demo)."""

    user_message = (
        "The bot restarted while this video was being made, and this provider cannot resume it. "
        "Your credits were refunded; please run it again."
    )


class JobInterrupted(ProviderError):
    """The bot stopped between sending the job and learning its id: we cannot know its fate."""

    user_message = (
        "The bot restarted at the moment this job was being sent, so it could not be tracked. "
        "Your credits were refunded; please run it again."
    )


class DeliveryFailed(BotError):
    """The finished video could not be handed over (channel gone, permissions missing)."""

    user_message = "The video was made but could not be posted here. Your credits were refunded."


class WrongPlace(BotError):
    """A request from somewhere the bot makes no videos for: a direct message, a server it is not
    allowed in or has left, or a member who left the job's server. Nothing is charged."""

    user_message = "Videos can only be made in a server's text channel."


class BotCannotPost(BotError):
    """The bot lacks a permission it needs to deliver the video in that channel; checked before charging."""

    def __init__(self, missing: list[str]) -> None:
        super().__init__(
            f"bot lacks {', '.join(missing)}",
            user_message=f"I can't post videos in this channel: I need {', '.join(missing)} here. Nothing was charged.",
        )


class UploadRefused(DeliveryFailed):
    """Discord answered 413 to the video even after it was re-encoded to fit (our idea of the limit
    was wrong twice). Refunded like any delivery failure; the provider's link, when there is one,
    is the requester's way to the video."""

    user_message = (
        "The video was made, but Discord refused the upload even after it was re-encoded smaller. "
        "Your credits were refunded."
    )

    def __init__(self, detail: str = "", *, link: str | None = None, expires_at: float | None = None) -> None:
        message = None
        if link:
            message = f"{self.user_message} You can still download it from the provider: {link}"
            if expires_at:
                message += f" (link expires <t:{int(expires_at)}:R>)"
        super().__init__(detail, user_message=message)


class NotReady(BotError):
    """A command arrived before the bot finished starting."""

    user_message = "The bot is still starting up. Please try again in a few seconds."


class LeaseLost(BotError):
    """Another bot process took this job over (our lease expired) or it was finished elsewhere.

    Raised by a fenced job write that matched no row; the runner stops working the job quietly and
    writes nothing more, so the job is never settled or moved twice."""

    user_message = "This job is being handled by another instance of the bot."


class DatabaseUnavailable(BotError):
    """The database did not answer: refused or lost connection, a server shutting down or restarting,
    no free connection, SQLite's file locked past its busy timeout, a disk I/O error. About the database,
    never about the job: a job's step waits for it and carries on (bot/jobs/retry.py); a command is
    refused before anything is charged. Raised by both storage backends (bot/storage/outage.py)."""

    user_message = "The bot's database is not answering right now. Nothing was charged; please try again in a moment."
