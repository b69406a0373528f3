"""SigAtlas dashboard (Plotly Dash). Opens an atlas read-only; never imports torch or model code.

Build the app with ``dashboard.app.create_app(atlas_path)``; nothing heavy runs at import.
"""
