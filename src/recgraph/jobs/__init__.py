"""Scheduled work: crawl, train and deliver on intervals (``recgraph run``).

See :mod:`recgraph.jobs.scheduler`.
"""
