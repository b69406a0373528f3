"""Every test here drives headless Chromium against a served dashboard: marked ``browser`` and
``slow`` (``pytest -m "not slow"`` leaves them out; ``make test`` and CI run them all)."""

from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.slow)
