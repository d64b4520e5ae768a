"""Collectors that fill the store: the Bluesky follow-graph crawler and the Telegram feed bot.

Both are resumable and rate-limit aware, and both write through
:class:`recgraph.data.store.Store`, so a restart never loses or doubles a row.
Each ships a faithful local fake of its remote API (``fake_server``) that the
tests and benchmarks run against.
"""
