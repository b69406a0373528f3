"""View-models: data in, Dash components, figures and table rows out; no callbacks, no Dash app.

``results``: the views of one query result (Diseases, Studies, Cells and Genes tabs) and the data
behind them; ``modules``: the Modules tab; ``studies``: how each study was read and which labels
the views use.
"""
