"""Bluesky (AT Protocol): a breadth-first follow-graph crawler over the public AppView.

- :mod:`.client`: XRPC over httpx, bounded concurrency, retries;
- :mod:`.ratelimit`: pacing from the ``RateLimit-*`` headers, 429 handling;
- :mod:`.crawler`: the crawl loop, with leases and one transaction per account;
- :mod:`.state`: the crawl-state table;
- :mod:`.identity`: handle <-> DID;
- :mod:`.fake_server`: a local fake AppView for tests and benchmarks.
"""
