"""Hand-made callback payloads (issue 16, failure 4): whatever a client posts to Dash's callback
route, the answer is the callback's output, "no update" (204) or a 400 naming the input: never a
server error, and never work that the page itself could not have asked for."""

from __future__ import annotations

import json
import time

import pytest

# values a hand-made request can carry in place of any input or state
# values a hand-made request can carry in place of any input or state: one of each wrong kind
HOSTILE = [10**400, -1, float("nan"), True, "abc", "x" * 300_000, ["a", 1, None], {"a": {"b": 1}}, [[[[[[[[[[1]]]]]]]]]]]


@pytest.fixture(scope="module")
def client(tiny_build):
    from dashboard.app import create_app

    return create_app(tiny_build[1]).server.test_client()


@pytest.fixture(scope="module")
def dependencies(client):
    deps = client.get("/_dash-dependencies").get_json()
    # background callbacks start a job in another process: their inputs pass the same check (below)
    return [d for d in deps if d.get("clientside_function") is None and not d.get("background")]


def _outputs(output: str) -> list[dict] | dict:
    def one(spec):
        ident, _, prop = spec.partition("@")[0].rpartition(".")
        return {"id": json.loads(ident) if ident.startswith("{") else ident, "property": prop}

    if output.startswith(".."):
        return [one(s) for s in output[2:-2].split("...")]
    return one(output)


def _body(dep: dict, values: dict) -> dict:
    def entry(i):
        value = values.get((i["id"], i["property"]))
        if i["id"].startswith("{"):  # a pattern-matching input (ALL): one entry per matching component
            pattern = json.loads(i["id"])
            ident = {k: ("x" if v == ["ALL"] else v) for k, v in pattern.items()}
            return [{"id": ident, "property": i["property"], "value": value}] if (i["id"], i["property"]) in values else []
        return {"id": i["id"], "property": i["property"], "value": value}

    def entries(items):
        return [entry(i) for i in items]

    inputs = entries(dep["inputs"])
    first = inputs[0][0] if inputs and isinstance(inputs[0], list) and inputs[0] else inputs[0] if inputs else None
    changed = [] if not first else [f"{json.dumps(first['id'], separators=(',', ':'), sort_keys=True) if isinstance(first['id'], dict) else first['id']}.{first['property']}"]
    return {"output": dep["output"], "outputs": _outputs(dep["output"]), "inputs": inputs, "state": entries(dep["state"]),
            "changedPropIds": changed}


def _post(client, body: dict):
    text = json.dumps(body, allow_nan=True) if "NaN" not in str(body) else json.dumps(body)
    return client.post("/_dash-update-component", data=text, content_type="application/json")


def test_any_value_in_any_input_gets_an_answer_never_a_server_error(client, dependencies):
    failures = []
    for dep in dependencies:
        slots = [(i["id"], i["property"]) for i in dep["inputs"] + dep["state"]]
        for slot in slots:
            for value in HOSTILE:
                t0 = time.perf_counter()
                resp = _post(client, _body(dep, {slot: value}))
                took = time.perf_counter() - t0
                if resp.status_code not in (200, 204, 400) or took > 2.0:
                    failures.append(f"{dep['output'][:60]} {slot}={str(value)[:30]!r}: HTTP {resp.status_code} in {took:.1f} s")
                elif resp.status_code == 400:
                    named = slot[0] if not slot[0].startswith("{") else json.loads(slot[0])["type"]
                    assert named in resp.get_data(as_text=True), (slot, resp.get_data(as_text=True))
    assert not failures, f"{len(failures)} failing payloads:\n" + "\n".join(failures)


@pytest.mark.parametrize(("setting", "value", "named"), [
    ("null_draws", 10_000_000, "null"), ("null_draws", 10**400, "null"), ("cutoff", "abc", "cut"), ("cell_min", "x", "cell"),
    ("genes", 123, "gene"), ("min_coverage", 7, "coverage"),
], ids=["null-10M", "null-400-digits", "cut-text", "cell_min-text", "genes-number", "coverage-7"])
def test_the_query_job_refuses_what_the_controls_cannot_send(tiny_build, setting, value, named):
    """Issue 16, failure 3: a hand-made query job asking for 10,000,000 null draws (the controls stop
    at 10,000) is refused at once with a message, like every other out-of-range setting."""
    from dashboard.callbacks import query
    from dashboard.callbacks.wiring import QUERY_CONTROLS
    from dashboard.data import DashboardData
    from dashboard.state import DEFAULTS

    data = DashboardData(tiny_build[1])
    settings = {key: DEFAULTS[key] for key in QUERY_CONTROLS} | {"genes": "CD14 LYZ", setting: value}
    progress = []
    t0 = time.perf_counter()
    out = query.run_query(data, progress.append, run_clicks=1, request=None, **settings)
    assert time.perf_counter() - t0 < 5
    import dash

    assert out["result_key"] in (None, dash.no_update) and out["query_error"] in (None, dash.no_update)
    assert named in str(out["status"].children).lower()
    assert all(update[0] == 0 for update in progress)  # nothing started
