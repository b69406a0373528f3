"""SigAtlas dashboard (Plotly Dash). Opens an atlas read-only; never imports torch or model code.

Build the app with ``dashboard.app.create_app(atlas_path)``; nothing heavy runs at import.

Where things live: ``app`` (create_app, the background job manager), ``layout`` (the page),
``callbacks/`` (one module per job, each callback a top-level function), ``views/`` (data in,
figures and tables out), ``figures/`` (pure Plotly figures: ``common`` and one module per tab),
``state`` (the settings, their rules and the link), ``data`` (the one data-access layer), ``api``
(JSON), ``export`` (CSV, snapshot), ``serving`` and ``wsgi`` (auth, limits, gunicorn), ``ids``
(component ids).
"""
