"""View-models: data in, Dash components, figures and table rows out; no callbacks, no Dash app.

One module per results tab, named by the tab's value: ``diseases``, ``studies``, ``cells``,
``genes``, ``cell_genes``, ``modules`` (each holds its tab's layout, ``<tab>_tab``, and the views
only that tab shows). Shared: ``results`` (every view of one query result, as the render callback
draws them), ``controls`` (the sidebar), ``components`` (figure panels, tables, badges).
"""
