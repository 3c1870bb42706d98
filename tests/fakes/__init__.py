"""Local fake servers (aiohttp) standing in for the video providers and Discord."""
