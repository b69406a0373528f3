"""Developer tools, never imported by a server: ``python -m dashboard.devtools.loadtest`` (a bounded
load test of a running server) and ``python -m dashboard.devtools.pagebench`` (a user's wait for a
query on the page, in Chromium)."""
