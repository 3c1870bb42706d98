"""The optional HTTP side of the bot: health, metrics, provider callbacks (see server.py)."""
