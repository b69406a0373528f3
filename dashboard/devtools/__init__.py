"""Developer tools, never imported by a server: ``python -m dashboard.devtools.loadtest`` (a bounded
load test of a running server), ``python -m dashboard.devtools.pagebench`` (a user's wait for a
query on the page, in Chromium) and ``python -m dashboard.devtools.screenshots`` (every results tab
at three screen sizes)."""
