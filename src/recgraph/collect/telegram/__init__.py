"""Telegram: a feed bot that delivers channel posts and learns from 👍 / 👎.

- :mod:`.bot`: the bot: updates (its own ``getUpdates`` loop), replies, the service;
- :mod:`.delivery`: the one delivery path (claimed, per-chat lock, chats concurrently);
- :mod:`.picks`: which post each chat gets, through the pipeline's ``feed`` question;
- :mod:`.api`: a small Bot API client and what each error means;
- :mod:`.config`: the bot's settings;
- :mod:`.fake_server`: a local fake Bot API with faults, for tests.

The bot's durable state is :mod:`recgraph.data.telegram_state`.
"""
