"""Jobs: the quickstart, scheduled crawl / train / deliver, and distributed graph jobs."""
