"""Telegram: a feed bot that delivers channel posts and learns from 👍 / 👎.

- :mod:`.bot`: the bot (python-telegram-bot), its subscriber table and delivery;
- :mod:`.fake_server`: a local fake Bot API for tests.
"""
