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
def app(tiny_build):
    from compute.genes import symbol_table
    from dashboard.app import create_app

    app = create_app(tiny_build[1])
    # the process-wide gene symbol table (1.5-3 s, read once; the server's warm-up reads it in the
    # background): read before the payloads are timed, which judge each request, not a cold start
    symbol_table()
    return app


@pytest.fixture(scope="module")
def client(app):
    return app.server.test_client()


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
    first_id = json.dumps(first["id"], separators=(",", ":"), sort_keys=True) if first and isinstance(first["id"], dict) else first and first["id"]
    changed = [] if not first else [f"{first_id}.{first['property']}"]
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


# -- structure (issue 33, failure 4): requests that no page sends, answered 400 before any callback runs
def _server_callbacks(client) -> list[dict]:
    """Every callback the server runs (background ones too: a rejected request starts no job)."""
    return [d for d in client.get("/_dash-dependencies").get_json() if d.get("clientside_function") is None]


def _split(output: str) -> list[dict]:
    outputs = _outputs(output)
    return outputs if isinstance(outputs, list) else [outputs]


def _forgeries(dep: dict, others: list[dict]) -> dict[str, dict]:
    """Hand-made variants of the well-formed request for ``dep``, by what is forged."""
    good = _body(dep, {})
    other = next(o for o in others if o["output"] != dep["output"])
    first_input = good["inputs"][0]
    out = {
        "unknown output id": good | {"output": "no-such-output.children", "outputs": _outputs("no-such-output.children")},
        "output of a clientside callback": good | {"output": "..no-such.children...nor-this.value..",
                                                   "outputs": _outputs("..no-such.children...nor-this.value..")},
        "no output": {k: v for k, v in good.items() if k != "output"},
        "output not a text": good | {"output": [dep["output"]]},
        "missing input": good | {"inputs": good["inputs"][:-1]},
        "extra input": good | {"inputs": [*good["inputs"], {"id": "genes", "property": "value", "value": "CD14"}]},
        "extra state": good | {"state": [*good["state"], {"id": "no-such-state", "property": "value", "value": 1}]},
        "state of another component": good | {"state": [*good["state"][:-1], {"id": "genes", "property": "n_clicks", "value": 1}]}
        if good["state"] else good | {"state": [{"id": "genes", "property": "value", "value": "CD14"}]},
        "input of another component": good | {"inputs": [{"id": "no-such-input", "property": "n_clicks", "value": 1},
                                                          *good["inputs"][1:]]},
        "input not an object": good | {"inputs": ["genes.value", *good["inputs"][1:]]},
        "inputs not a list": good | {"inputs": {"id": "genes"}},
        "forged outputs": good | {"outputs": [{"id": "no-such-output", "property": "children"}]},
        "outputs of another callback": good | {"outputs": _outputs(other["output"])},
        "outputs missing": {k: v for k, v in good.items() if k != "outputs"},
        "forged changedPropIds": good | {"changedPropIds": ["no-such-input.n_clicks"]},
        "changedPropIds not a list": good | {"changedPropIds": "genes.value"},
        "changedPropIds naming an output": good | {"changedPropIds": [f"{_split(dep['output'])[0]['id']}.zzz"]},
    }
    if isinstance(first_input, dict):  # the same input under another property
        out["input property forged"] = good | {"inputs": [first_input | {"property": "style"}, *good["inputs"][1:]]}
    return out


def test_forged_callback_structure_gets_a_400_naming_it_never_a_server_error(client):
    """Issue 33, failure 4: 157 hand-made callback requests with a forged structure answered 500.
    For every registered callback, each forgery: 400 with a message that says what is wrong."""
    deps = _server_callbacks(client)
    assert len(deps) > 20
    failures, n = [], 0
    for dep in deps:
        for what, body in _forgeries(dep, deps).items():
            n += 1
            resp = client.post("/_dash-update-component", data=json.dumps(body), content_type="application/json")
            text = resp.get_data(as_text=True)
            if resp.status_code != 400 or not text.startswith("callback request"):
                failures.append(f"{what} -> HTTP {resp.status_code} {text[:100]!r} ({dep['output'][:50]})")
    # a clientside callback runs in the browser: a request naming its output names no server callback
    for dep in (d for d in client.get("/_dash-dependencies").get_json() if d.get("clientside_function") is not None):
        n += 1
        resp = client.post("/_dash-update-component", data=json.dumps(_body(dep, {})), content_type="application/json")
        if resp.status_code != 400 or "no callback of this server" not in resp.get_data(as_text=True):
            failures.append(f"clientside output -> HTTP {resp.status_code} ({dep['output'][:50]})")
    assert n > 400
    assert not failures, f"{len(failures)} of {n} forged requests not refused:\n" + "\n".join(failures[:40])


def test_the_messages_say_what_does_not_match(client):
    deps = _server_callbacks(client)
    dep = next(d for d in deps if "send-top" in json.dumps(d["inputs"]))
    cases = _forgeries(dep, deps)
    expected = {"unknown output id": "no callback of this server has the output 'no-such-output.children'",
                "no output": "no 'output'", "missing input": "'inputs' has 0 entries; the callback takes 1 (send-top.n_clicks)",
                "extra state": "'state' has 3 entries; the callback takes 2", "forged outputs": "'outputs' are not the callback's outputs",
                "forged changedPropIds": "'changedPropIds' names 'no-such-input.n_clicks', not an input of the callback (send-top.n_clicks)",
                "input of another component": "entry 0 of 'inputs' is no-such-input.n_clicks; the callback takes send-top.n_clicks there"}
    for what, message in expected.items():
        resp = client.post("/_dash-update-component", data=json.dumps(cases[what]), content_type="application/json")
        assert resp.status_code == 400 and message in resp.get_data(as_text=True), (what, resp.get_data(as_text=True))


def test_well_formed_requests_pass_the_structure_check(app, client):
    """Every callback's request as the page builds it (test _body: its outputs with Dash's @hash,
    pattern-matching inputs as lists, changedPropIds of its first input) is the callback's, those
    Dash adds when it first serves (the cancel of a background job: "cancel.id") included."""
    from dashboard import payloads

    deps = _server_callbacks(client)  # the first request: Dash adds its own callbacks then
    app_shapes = payloads.callback_shapes(app.callback_map)
    assert {d["output"] for d in deps} == set(app_shapes)
    for dep in deps:
        body = _body(dep, {})
        assert payloads.check_callback_structure(body, app_shapes).output == dep["output"]
        if not dep.get("background"):  # the server takes it (a background one would start a job)
            resp = client.post("/_dash-update-component", data=json.dumps(body), content_type="application/json")
            assert resp.status_code in (200, 204), (dep["output"][:60], resp.status_code, resp.get_data(as_text=True)[:200])
        # a pattern-matching input with its matching components, and no state sent where none is taken
        if any(i["id"].startswith("{") for i in dep["inputs"]):
            values = {(i["id"], i["property"]): 1 for i in dep["inputs"] if i["id"].startswith("{")}
            payloads.check_callback_structure(_body(dep, values), app_shapes)
        if not dep["state"]:
            payloads.check_callback_structure({k: v for k, v in body.items() if k != "state"}, app_shapes)


def _send_dep(client, button: str) -> dict:
    return next(d for d in _server_callbacks(client) if d["inputs"][0]["id"] == button)


@pytest.mark.parametrize("button", ["send-top", "send-selected"])
@pytest.mark.parametrize("store", [["monocyte"], "monocyte", 7, {"rank_cell_types": "monocyte"}, {"rank_cell_types": [1]},
                                   {"genes": ["CD14"]}, {"rank_cell_types": [["x"]]}],
                         ids=["list", "text", "number", "text-filter", "number-in-filter", "unknown-key", "nested"])
def test_a_ranking_store_of_the_wrong_shape_is_a_400(client, button, store):
    """Issue 33, failure 4: the send-top / send-selected callbacks took any store (a list, a text)
    as the population and failed reading it: 500."""
    dep = _send_dep(client, button)
    resp = _post(client, _body(dep, {(button, "n_clicks"): 1, ("rank-store", "data"): store, ("rank-top-n", "value"): 5}))
    assert resp.status_code == 400 and "rank-store" in resp.get_data(as_text=True), resp.get_data(as_text=True)


@pytest.mark.parametrize("button", ["send-top", "send-selected"])
def test_the_store_of_two_groups_compared_is_taken(client, button):
    """Two groups of cells compared on the UMAP store their comparison's key and title
    (cells.compare_groups), not filters: the page's requests carrying it were answered 400, so
    no spread and no send followed a comparison. Now the callback answers (here: the comparison
    is no longer held, said in the reply)."""
    dep = _send_dep(client, button)
    store = {"lasso": "cell-groups-0123456789ab-0123456789abcdef01234567", "label": "group A vs group B (picked on the UMAP)"}
    resp = _post(client, _body(dep, {(button, "n_clicks"): 1, ("rank-store", "data"): store, ("rank-top-n", "value"): 5}))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert "no longer held" in resp.get_data(as_text=True)


def test_a_result_key_that_names_another_cache_entry_is_a_400(client, tiny_build):
    """Issue 33, failure 4: a short link's key (or any cache entry's) sent as the result key reached
    the rendering callbacks, which read the link's text as a result: 500. A key must have the form
    of a query result's; one of that form naming a gene ranking reads as no result (no update)."""
    from dashboard.data import DashboardData

    data = DashboardData(tiny_build[1])
    link = data.store_link("?genes=CD14")
    ranking = data.gene_ranking(cell_types=tuple(data.cell_types[:1]))
    ranking_key = next(k for k, v in data._by_key.items() if v is ranking)  # a cache entry's key of a result's form
    deps = _server_callbacks(client)
    keyed = [d for d in deps if not d.get("background") and any(i["id"] == "result-key" for i in d["inputs"] + d["state"])]
    assert len(keyed) >= 5
    for dep in keyed:
        trigger = {(i["id"], i["property"]): 1 for i in dep["inputs"] if i["property"] == "n_clicks"}
        for forged in (link, f"link-{link}", "x" * 64, "A" * 64):
            resp = _post(client, _body(dep, {("result-key", "data"): forged, **trigger}))
            assert resp.status_code == 400 and "result-key" in resp.get_data(as_text=True), (dep["output"][:60], forged, resp.status_code)
        resp = _post(client, _body(dep, {("result-key", "data"): ranking_key, **trigger}))
        assert resp.status_code in (200, 204), (dep["output"][:60], resp.status_code, resp.get_data(as_text=True)[:200])
    assert data.stored_result(ranking_key) is None and data.stored_result(ranking_key, type(ranking)) is ranking


@pytest.mark.parametrize("images", [
    {"../../README.txt": {"error": "x"}}, {"diseases ": {"error": "x"}, "diseases": {"error": "y"}}, {"a b": {}, "a_b": {}},
    {"diseases": "not a mapping"}, {"diseases": {"svg": 5}}, {"diseases": {"other": "x"}}, ["diseases"],
], ids=["path", "collide-space", "collide-underscore", "entry-text", "svg-number", "unknown-field", "list"])
def test_forged_snapshot_image_names_are_a_400(client, tiny_build, images):
    """Issue 33, failure 4: image names the page never sends (two that map to one file name, a
    reserved one) made the snapshot fail: 500. The images are those of the page's figures."""
    from compute.query import QueryParams
    from dashboard.data import DashboardData

    data = DashboardData(tiny_build[1])
    params = QueryParams(genes=(("CD14", None), ("LYZ", None)))
    data.query(params)
    dep = next(d for d in _server_callbacks(client) if d["inputs"][0]["id"] == "snapshot-images")
    resp = _post(client, _body(dep, {("snapshot-images", "data"): {"clicks": 1, "images": images},
                                     ("result-key", "data"): data.result_key(params)}))
    assert resp.status_code == 400 and "snapshot-images" in resp.get_data(as_text=True), resp.get_data(as_text=True)
