"""The local playground: ``/sora`` in a browser page on the same job pipeline as Discord.

members.py (who can be played), hub.py (live job updates to open pages), notifier.py (the
Notifier: updates to the hub, videos to a local folder), actions.py (admission and the creative
buttons, without Discord or HTTP), views.py (HTML), routes.py (aiohttp handlers), app.py (start-up).
"""
