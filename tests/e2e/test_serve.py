"""Serving: gunicorn with two workers and basic auth, the JSON API, input limits, the load test.

One gunicorn (2 sync workers, credentials set) serves the tiny atlas for the whole module; its
log goes to test-artifacts/serve-gunicorn.log."""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import subprocess
import sys
import threading
import time
import types
import urllib.error
import urllib.parse
import urllib.request

import pytest

from compute.reference import ms1_signature
from tests.conftest import REPO, free_port, running_server

USER, PASSWORD = "tester", "pa:ss w0rd"  # the first ':' separates: the password keeps its own
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}
WRONG = {"Authorization": "Basic " + base64.b64encode(f"{USER}:nope".encode()).decode()}


def _env(**kw) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGATLAS_") or k == "SIGATLAS_CACHE_DIR"}
    return env | {k: str(v) for k, v in kw.items()}


def _call(url: str, *, body=None, headers=AUTH, method=None, data: bytes | None = None) -> tuple[int, dict, str]:
    """(status, headers, text) of one request; ``body`` goes as JSON."""
    hdrs = dict(headers or {})
    if body is not None:
        data = json.dumps(body).encode()
        hdrs["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, headers=hdrs, method=method)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, dict(resp.headers), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode("utf-8", "replace")


@pytest.fixture(scope="module")
def served(tiny_build):
    """URL of gunicorn serving the tiny atlas: 2 workers, basic auth on."""
    port = free_port()
    with running_server([sys.executable, "-m", "gunicorn", "-c", "python:dashboard.wsgi", "-w", "2", "-b", f"127.0.0.1:{port}"],
                        url=f"http://127.0.0.1:{port}", ready=lambda u: _call(u + "/_dash-layout")[0] == 200,
                        log_name="serve-gunicorn.log", env=_env(SIGATLAS_ATLAS=tiny_build[1], SIGATLAS_AUTH=f"{USER}:{PASSWORD}")) as url:
        yield url


@pytest.fixture(scope="module")
def atlas_info(served):
    status, _, text = _call(served + "/api/v1/atlas")
    assert status == 200
    return json.loads(text)


# -- the API ---------------------------------------------------------------------------------
def test_api_ranks_the_planted_disease_first_with_counts(served, atlas_info, tiny_build, tiny_atlas):
    truth = {p["name"]: p for p in tiny_build[2]["programs"]}["MS1"]
    top = max(truth["strength"], key=truth["strength"].get)
    monocytes = [c for c in atlas_info["cell_types"] if "monocyte" in c.lower()]
    query = {"genes": "\n".join(ms1_signature()), "cell_types": monocytes, "null": 100}
    status, headers, text = _call(served + "/api/v1/query", body=query)
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    answer = json.loads(text)
    first = answer["diseases"][0]
    assert first["group"] == top and first["rank"] == 1
    assert first["n_samples"] >= 3 and first["n_studies"] >= 1 and first["mean_hit_pct"] > answer["diseases"][-1]["mean_hit_pct"]
    # every disease has a specificity p but the reference (normal), which is compared with itself
    assert all(0 < d["p_value"] <= 1 for d in answer["diseases"] if d["group"] != "normal") and answer["null"]["draws"] == 100
    assert [d["p_value"] for d in answer["diseases"] if d["group"] == "normal"] in ([None], [])
    # the monocytes of the studies that measured enough of MS1 (the others are left out, with the reason)
    kept = [r["study"] for r in answer["studies"]["coverage"] if r["included"]]
    cells = tiny_atlas.cells
    assert answer["n_selected"] == int((cells["cell_type"].astype(str).isin(monocytes) & cells["study"].astype(str).isin(kept)).sum()) > 0
    res = answer["resolution"]
    assert res["n_matched"] == len(res["matched"]) > 50 and res["n_missing"] == len(res["missing"])
    assert answer["cached"] is False
    # the same query as a GET with "|"-separated cell types (and the null's name of today): the same
    # ranking, now from the cache (answered by either worker: the cache is on disk, shared)
    args = urllib.parse.urlencode({"genes": ",".join(ms1_signature()), "cell_types": "|".join(monocytes), "null_draws": 100})
    status, _, text = _call(f"{served}/api/v1/query?{args}")
    again = json.loads(text)
    assert status == 200 and again["cached"] is True and again["diseases"] == answer["diseases"]


def test_api_filters_by_ontology_term_and_groups_diseases(served, atlas_info, tiny_build, tiny_atlas):
    cells = tiny_atlas.cells
    subtypes = ["classical monocyte", "non-classical monocyte"]
    # the atlas description: the term tree with the cells at or below each term, and the disease groups
    tree = atlas_info["hierarchy"]["cell_type"]

    def nodes(ns):
        for n in ns:
            yield n
            yield from nodes(n["children"])

    mono = next(n for n in nodes(tree["tree"]) if n["label"] == "monocyte")
    assert mono["id"] == "CL:0000576" and mono["n_cells"] == int(cells["cell_type"].astype(str).isin(subtypes).sum())
    assert {c["label"] for c in mono["children"]} == set(subtypes)
    assert {"infectious disease", "autoimmune disease"} <= set(atlas_info["disease_groups"])
    assert atlas_info["vocabulary"]["versions"]["CL"] and "disease_groups" in atlas_info["parameters"]
    assert atlas_info["vocabulary"]["label_transfer"]["accuracy"]["n_evaluated"] > 0
    # "monocyte", its id and the two subtypes select the same cells and give the same answer
    genes = ",".join(ms1_signature())
    answers = []
    for cell_types in ("monocyte", "CL:0000576", "|".join(subtypes)):
        status, _, text = _call(f"{served}/api/v1/query?" + urllib.parse.urlencode({"genes": genes, "cell_types": cell_types, "min_coverage": 0}))
        assert status == 200, text
        answers.append(json.loads(text))
    assert answers[0]["n_selected"] == answers[1]["n_selected"] == answers[2]["n_selected"] == mono["n_cells"]
    assert answers[0]["diseases"] == answers[1]["diseases"] == answers[2]["diseases"]
    assert answers[1]["cached"] is True  # the id is read as the term: the same query
    assert "harmonised to Cell Ontology" in answers[0]["labels"]
    # diseases ranked at parent terms, in the order given; the answer says what each pooled
    body = {"genes": genes, "cell_types": ["monocyte"], "disease_groups": ["MONDO:0005550", "autoimmune disease"]}
    status, _, text = _call(served + "/api/v1/query", body=body)
    assert status == 200, text
    answer = json.loads(text)
    assert answer["disease_groups"]["groups"] == ["infectious disease", "autoimmune disease"]
    pooled = answer["disease_groups"]["pooled"]
    assert pooled == tiny_atlas.disease_grouping(["infectious disease", "autoimmune disease"]) and "COVID-19" in pooled
    ranked = [d["group"] for d in answer["diseases"]]
    assert ranked[0] == "infectious disease" and not set(pooled) & set(ranked)


def test_api_reports_each_study_coverage_and_who_was_left_out(served, atlas_info, tiny_atlas):
    genes = [g for g in ms1_signature() if g in set(tiny_atlas.genes)]
    coverage = tiny_atlas.study_coverage(genes)["coverage"].sort_values()
    above = coverage[coverage > coverage.iloc[0]].iloc[0]
    cut = round(float(coverage.iloc[0] + above) / 2, 4)
    args = urllib.parse.urlencode({"genes": ",".join(genes), "min_coverage": cut})
    status, _, text = _call(f"{served}/api/v1/query?{args}")
    assert status == 200, text
    answer = json.loads(text)
    # every key the API gave before, and the studies' coverage
    assert {"atlas", "resolution", "n_selected", "threshold", "hit_rule", "null", "diseases", "cached", "studies"} <= set(answer)
    studies = answer["studies"]
    assert studies["min_coverage"] == cut
    rows = {r["study"]: r for r in studies["coverage"]}
    assert set(rows) == {s["id"] for s in atlas_info["studies"]}
    for sid, r in rows.items():
        assert set(r) == {"study", "requested", "measured", "coverage", "n_selected", "included", "reason"}
        assert r["requested"] == len(genes) and r["coverage"] == pytest.approx(coverage[sid], abs=1e-9)
        assert r["included"] == (r["coverage"] >= cut) and (r["reason"] == "") == r["included"]
    assert studies["excluded"] == [sid for sid, r in rows.items() if not r["included"] and r["n_selected"] > 0]
    low = str(coverage.index[0])
    assert low in studies["excluded"] and rows[low]["reason"].startswith(f"measured {rows[low]['measured']} of the {len(genes)}")
    # the cells of the studies left out are not among those ranked
    assert answer["n_selected"] == sum(r["n_selected"] for r in rows.values() if r["included"])
    # the atlas description names the setting and each study's measured share
    assert "min_coverage" in atlas_info["parameters"] and atlas_info["warnings"] == tiny_atlas.meta["report"]["warnings"]
    assert all(0 < s["measured_share"] <= 1 for s in atlas_info["studies"])


def test_api_reports_every_gene_decision(served):
    status, _, text = _call(served + "/api/v1/query", body={"genes": "cd14; LYZ, NOTAGENE42 CD14"})
    assert status == 200
    res = json.loads(text)["resolution"]
    # no gene has the name: not a gene, apart from genes the model lacks (issue 36)
    assert res["matched"] == ["CD14", "LYZ"] and res["missing"] == [] and res["not_genes"] == ["NOTAGENE42"]
    assert res["renamed"] == [["cd14", "CD14"]] and res["duplicates"] == ["CD14"]
    assert json.loads(text)["null"] is None and all(d["p_value"] is None for d in json.loads(text)["diseases"])


@pytest.mark.parametrize(("query", "named"), [
    ({"genes": " ".join(f"G{i}" for i in range(5001))}, "at most 5000"),
    ({"genes": "CD14 " * 25_000}, "at most 100,000"),
    ({"genes": ""}, "genes is empty"),
    ({"genes": " , ;"}, "genes is empty"),
    ({"genes": "CD14", "null": "abc"}, "null must be a number"),
    ({"genes": "CD14", "null": 50}, "null must be 0"),
    ({"genes": "CD14", "null": 1_000_000}, "null must be 0"),
    ({"genes": "CD14", "null": True}, "null must be a number"),
    ({"genes": "CD14", "null": 2.5}, "whole number"),
    ({"genes": "CD14", "cell_types": ["no such cell"]}, "unknown cell type 'no such cell'"),
    ({"genes": "CD14", "cell_types": 7}, "cell_types must be"),
    ({"genes": "CD14", "cell_types": "T cells"}, "unknown cell type 'T cells' (an ontology term label or id"),
    ({"genes": "CD14", "disease_groups": ["sepsis"]}, "unknown disease group 'sepsis': name a parent term"),
    ({"genes": "CD14", "disease_groups": "infectious disease|MONDO:9999999"}, "unknown disease group 'MONDO:9999999'"),
    ({"genes": "CD14", "disease_groups": 3}, "disease_groups must be"),
    ({"genes": "CD14", "cut": "nan"}, "finite"),
    ({"genes": "CD14", "cut": 150}, "cut must be within 0-100"),
    # the names a link uses now (the older ones above still read), checked by the same rules
    ({"genes": "CD14", "cutoff": 150}, "cutoff must be within 0-100 for the percentile rule, got 150"),
    ({"genes": "CD14", "rule": "quantile", "cutoff": 90}, "cutoff must be within 0-1 for the quantile rule, got 90"),
    ({"genes": "CD14", "null_draws": 5000}, "null_draws must be 0 (no p-values) or 100-1,000 draws, got 5,000"),
    ({"genes": "CD14", "data_kind": "fake"}, "data_kind must be one of all, real, simulated, got 'fake'"),
    ({"genes": "CD14", "null": 100, "null_draws": 100}, "null_draws is given twice (also as null)"),
    ({"genes": "CD14", "rule": "magic"}, "rule must be one of"),
    ({"genes": "CD14", "cell_min": 0}, "cell_min must be within"),
    ({"genes": "CD14", "min_coverage": 1.5}, "min_coverage must be within 0-1, got 1.5"),
    ({"genes": "CD14", "min_coverage": -0.1}, "min_coverage must be within 0-1"),
    ({"genes": "CD14", "min_coverage": "half"}, "min_coverage must be a number"),
    ({"genes": "CD14", "min_coverage": True}, "min_coverage must be a number"),
    ({"genes": "CD14", "min_coverage": "nan"}, "min_coverage must be a finite number"),
    ({"genes": 42}, "genes must be text"),
    ({"genes": "CD14", "atlas": "/etc"}, "unknown parameter 'atlas'"),
    ({"genes": "CD14", "path": "../../atlas.json"}, "unknown parameter 'path'"),
    ({"genes": "NOTAGENE1 NOTAGENE2"}, "none of the 2 requested genes"),
])
def test_api_bad_input_gets_400_naming_the_problem(served, query, named):
    status, headers, text = _call(served + "/api/v1/query", body=query)
    assert status == 400, text
    assert headers["Content-Type"].startswith("application/json")
    assert named in json.loads(text)["error"]


def test_api_malformed_requests_get_json_errors(served):
    status, _, text = _call(served + "/api/v1/query", data=b"{not json", headers=AUTH | {"Content-Type": "application/json"})
    assert status == 400 and "JSON object" in json.loads(text)["error"]
    status, _, text = _call(served + "/api/v1/query", body=["CD14"])
    assert status == 400 and "JSON object" in json.loads(text)["error"]
    status, _, text = _call(served + "/api/v1/query", method="DELETE")
    assert status == 405 and "Method Not Allowed" in json.loads(text)["error"]
    status, text = _announce_body(served, 1_250_000, "/api/v1/query")  # over the API's 1 MB
    assert status == 413 and "at most 1,000,000 are accepted" in json.loads(text)["error"]
    status, text = _announce_body(served, 9 * 2**20, "/api/v1/query")
    assert status == 413 and "Too Large" in json.loads(text)["error"]


def _chunked_post(url: str, path: str, chunks) -> tuple[int, str]:
    """(status, text) of a POST whose body is sent chunked (no Content-Length to check)."""
    conn = http.client.HTTPConnection(urllib.parse.urlsplit(url).netloc, timeout=60)
    try:
        conn.request("POST", path, body=iter(chunks), headers=AUTH | {"Content-Type": "application/json"}, encode_chunked=True)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    except (BrokenPipeError, ConnectionResetError):  # the server answered and closed before the body ended
        return 413, json.dumps({"error": "connection closed by the server"})
    finally:
        conn.close()


def test_api_loose_ends_get_json_answers(served):
    """Issue 16, failure 5: unknown /api paths, deep JSON, chunked bodies over the limit, huge integers."""
    for path in ("/api/v2/query", "/api/v1/query/x", "/api/nope"):
        status, _, text = _call(served + path)
        assert status == 404 and "no API route" in json.loads(text)["error"], (path, text[:80])
    deep = b'{"genes": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    status, _, text = _call(served + "/api/v1/query", data=deep, headers=AUTH | {"Content-Type": "application/json"})
    assert status == 400 and "nested too deeply" in json.loads(text)["error"]
    status, text = _chunked_post(served, "/api/v1/query", [b" " * 1_000_000 for _ in range(12)])
    assert status == 413, text[:200]
    status, text = _chunked_post(served, "/api/v1/query", [b'{"genes": "CD14 LYZ", ', b'"null_draws": 0}'])
    assert status == 200 and json.loads(text)["diseases"], text[:200]
    status, _, text = _call(served + "/api/v1/query?genes=CD14&cell_min=" + "9" * 400)
    assert status == 400 and "cell_min" in json.loads(text)["error"]


def test_no_request_reaches_files_outside_the_app(served):
    for path in ("/assets/../../pyproject.toml", "/assets/..%2F..%2Fpyproject.toml", "/_dash-component-suites/dash/../../../pyproject.toml",
                 "/_dash-component-suites/..%2F..%2F..%2Fpyproject.toml"):
        status, _, text = _call(served + path)
        assert status == 404, path
        assert "[project]" not in text


# -- request size and upload ----------------------------------------------------------------------
def _announce_body(url: str, n_bytes: int, path: str) -> tuple[int, str]:
    """(status, text) for a POST that announces ``n_bytes`` of body and sends none: a body over
    the limit is refused on its length alone, before a byte of it is read."""
    conn = http.client.HTTPConnection(urllib.parse.urlsplit(url).netloc, timeout=30)
    try:
        conn.putrequest("POST", path)
        for k, v in (AUTH | {"Content-Type": "application/json", "Content-Length": str(n_bytes)}).items():
            conn.putheader(k, v)
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def _outputs(spec: str) -> list[dict]:
    # "..id.prop...id.prop@hash.." (a duplicate output carries its callback's hash)
    parts = [p.partition("@")[0] for p in spec[2:-2].split("...")] if spec.startswith("..") else [spec.partition("@")[0]]
    return [{"id": p.rsplit(".", 1)[0], "property": p.rsplit(".", 1)[1]} for p in parts]


def _upload(served, deps, n_bytes: int) -> tuple[int, str]:
    dep = next(d for d in deps if any(i["id"] == "upload" for i in d["inputs"]) and not d["clientside_function"])
    contents = "data:text/plain;base64," + base64.b64encode(b"CD14\n" * (n_bytes // 5)).decode()
    body = {"output": dep["output"], "outputs": _outputs(dep["output"]), "changedPropIds": ["upload.contents"],
            "inputs": [{"id": "upload", "property": "contents", "value": contents}],
            "state": [{"id": "upload", "property": "filename", "value": "genes.txt"}]}
    status, _, text = _call(served + "/_dash-update-component", body=body)
    return status, text


def test_gene_file_uploads_within_and_over_the_limits(served):
    deps = json.loads(_call(served + "/_dash-dependencies")[2])
    status, text = _upload(served, deps, 4_900_000)  # under upload.MAX_BYTES: read (4/3 bigger as base64)
    assert status == 200 and json.loads(text)["response"]["genes"]["value"].startswith("CD14\nCD14")
    status, text = _upload(served, deps, 5_500_000)  # over it: the note says so
    note = json.loads(text)["response"]["upload-note"]["children"]["props"]
    assert status == 200 and note == {"children": "genes.txt: 5.5 MB is larger than the 5 MB accepted", "className": "error"}
    # a larger file's request goes over the server's limit: refused unread, the browser names the size
    assert _announce_body(served, 9_000_000 * 4 // 3, "/_dash-update-component")[0] == 413
    clientside = [d for d in deps if d["clientside_function"] and any(i["id"] == "upload" for i in d["inputs"])]
    assert clientside and clientside[0]["output"].startswith("upload-note.children")


# -- basic auth ---------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/", "/_dash-layout", "/_dash-dependencies", "/api/v1/query?genes=CD14", "/api/v1/atlas",
                                  "/assets/sigatlas.css", "/_favicon.ico"])
def test_every_route_needs_the_credentials(served, path):
    for headers in (None, WRONG, {"Authorization": "Bearer x"}):
        status, hdrs, _ = _call(served + path, headers=headers)
        assert status == 401, (path, headers)
        assert hdrs["WWW-Authenticate"].startswith("Basic realm=")
    status, _, _ = _call(served + "/_dash-update-component", body={"output": "x.y"}, headers=None)
    assert status == 401


@pytest.mark.parametrize(("path", "marker"), [("/", "_dash-config"), ("/_dash-layout", "props"), ("/api/v1/query?genes=CD14", "diseases")])
def test_the_right_credentials_open_every_route(served, path, marker):
    status, _, text = _call(served + path)
    assert status == 200 and marker in text


def test_credentials_come_from_the_environment_or_a_file(tmp_path):
    from dashboard.wsgi import ServingError, load_credentials

    assert load_credentials(environ={}) is None
    assert load_credentials(environ={"SIGATLAS_AUTH": "ann:a:b"}) == ("ann", "a:b")
    f = tmp_path / "auth"
    f.write_text("bob:secret\nignored\n")
    assert load_credentials(f, environ={"SIGATLAS_AUTH": "ann:x"}) == ("bob", "secret")
    assert load_credentials(environ={"SIGATLAS_AUTH_FILE": str(f)}) == ("bob", "secret")
    for bad in ("nocolon", ":pw", "user:"):
        with pytest.raises(ServingError, match="user:password"):
            load_credentials(environ={"SIGATLAS_AUTH": bad})
    with pytest.raises(ServingError, match="cannot read"):
        load_credentials(tmp_path / "missing")


def test_python_m_dashboard_honours_auth_and_announces_remote_binding(tiny_build, tmp_path, monkeypatch, capsys):
    import dash

    from dashboard.__main__ import main

    served_apps = []
    monkeypatch.setattr(dash.Dash, "run", lambda self, **kw: served_apps.append((self, kw)))
    f = tmp_path / "auth"
    f.write_text(f"{USER}:{PASSWORD}\n")
    assert main(["--atlas", str(tiny_build[1]), "--auth-file", str(f), "--host", "0.0.0.0", "--allow-remote"]) == 0
    app, kw = served_apps[-1]
    assert kw["host"] == "0.0.0.0"
    client = app.server.test_client()
    assert client.get("/_dash-layout").status_code == 401
    assert client.get("/_dash-layout", headers=AUTH).status_code == 200
    err = capsys.readouterr().err
    assert "WARNING: serving on 0.0.0.0:8050" in err and "Basic auth is on" in err
    monkeypatch.delenv("SIGATLAS_AUTH", raising=False)
    monkeypatch.delenv("SIGATLAS_AUTH_FILE", raising=False)
    assert main(["--atlas", str(tiny_build[1]), "--host", "0.0.0.0", "--allow-remote"]) == 0
    assert "NO PASSWORD IS SET" in capsys.readouterr().err
    assert served_apps[-1][0].server.test_client().get("/_dash-layout").status_code == 200


# -- starting up ----------------------------------------------------------------------------------
def test_remote_bind_needs_allow_remote():
    proc = subprocess.run([sys.executable, "-m", "dashboard", "--host", "0.0.0.0"], cwd=REPO, capture_output=True, text=True, env=_env())
    assert proc.returncode == 2
    assert "add --allow-remote" in proc.stderr


def test_wsgi_refuses_a_missing_or_bad_setting(tmp_path):
    proc = subprocess.run([sys.executable, "-c", "from dashboard.wsgi import server"], cwd=REPO, capture_output=True, text=True, env=_env())
    assert proc.returncode != 0 and "ServingError: $SIGATLAS_ATLAS is not set" in proc.stderr
    gunicorn = [sys.executable, "-m", "gunicorn", "-c", "python:dashboard.wsgi", "-b", f"127.0.0.1:{free_port()}"]
    for env, message in ((_env(), "$SIGATLAS_ATLAS is not set"),
                         (_env(SIGATLAS_ATLAS=tmp_path / "nowhere"), "no such folder"),
                         (_env(SIGATLAS_ATLAS=tmp_path), "no atlas.json")):
        proc = subprocess.run(gunicorn, cwd=REPO, capture_output=True, text=True, env=env, timeout=60)
        assert proc.returncode == 2, proc.stderr
        assert message in proc.stderr and "Booting worker" not in proc.stderr


def test_gunicorn_refuses_malformed_credentials(tiny_build):
    cmd = [sys.executable, "-m", "gunicorn", "-c", "python:dashboard.wsgi", "-b", f"127.0.0.1:{free_port()}"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=_env(SIGATLAS_ATLAS=tiny_build[1], SIGATLAS_AUTH="nocolon"), timeout=60)
    assert proc.returncode == 2 and "$SIGATLAS_AUTH must hold 'user:password'" in proc.stderr


def test_gunicorn_announces_a_remote_bind(tiny_build, monkeypatch, capsys):
    from dashboard import wsgi

    monkeypatch.setenv("SIGATLAS_ATLAS", str(tiny_build[1]))
    monkeypatch.delenv("SIGATLAS_AUTH", raising=False)
    monkeypatch.delenv("SIGATLAS_AUTH_FILE", raising=False)
    arbiter = types.SimpleNamespace(cfg=types.SimpleNamespace(bind=["127.0.0.1:8050", "0.0.0.0:8051", "unix:/tmp/s"], workers=4))
    wsgi.on_starting(arbiter)
    out = capsys.readouterr()
    assert "WARNING: serving on 0.0.0.0:8051" in out.err and "NO PASSWORD IS SET" in out.err and "127.0.0.1:8050," not in out.err
    arbiter.cfg.bind = ["127.0.0.1:8050", "[::1]:8051"]
    wsgi.on_starting(arbiter)
    assert "WARNING" not in capsys.readouterr().err
    assert [wsgi.is_loopback(h) for h in ("127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]", "0.0.0.0", "10.1.2.3", "example.org", None)] == [
        True, True, True, True, True, False, False, False, False]


# -- background queries across workers ---------------------------------------------------------------
def _start_and_poll(served: str, request_id: int, results: list) -> None:
    """One page as the Dash renderer runs it: start the query job, poll until it answers;
    appends the result key (or what went wrong) to ``results``."""
    try:
        results.append(_run_job(served, request_id))
    except Exception as exc:  # noqa: BLE001 - reported by the test's assertion
        results.append(f"failed: {exc!r}")


_LIST_CONTROLS = {"cell-types", "diseases", "tissues", "studies", "disease-groups"}


def _run_job(served: str, request_id: int) -> str:
    page = _call(served + "/")[2]
    end_id = json.loads(re.search(r'<script id="_dash-config" type="application/json">(.*?)</script>', page, re.S).group(1))["end_id"]
    deps = json.loads(_call(served + "/_dash-dependencies")[2])
    dep = next(d for d in deps if d["output"].startswith("..result-key.data") and d.get("background"))
    values = {"genes": "CD14 LYZ S100A8 S100A9 FCN1 VCAN", "data-kind": "all", "rule": "percentile", "cut": 90, "cell-min": 25,
              "samp-min": 3, "min-coverage": 0.5, "null-draws": 0}
    body = {"output": dep["output"], "outputs": _outputs(dep["output"]), "changedPropIds": ["query-request.data"],
            # the query request is the one set; Run and the job request (a linked page's) stay as the page holds them
            "inputs": [dict(i, value=request_id if i["id"] == "query-request" else None) for i in dep["inputs"]],
            # the filters are lists; any other control left empty (None) takes its default, as on the page
            "state": [dict(s, value=values.get(s["id"], [] if s["id"] in _LIST_CONTROLS else None)) for s in dep["state"]]}
    start = json.loads(_call(f"{served}/_dash-update-component?endId={end_id}", body=body)[2])
    poll = dict(body, inputs=[dict(i, value=None) for i in body["inputs"]], state=[dict(s, value=None) for s in body["state"]])
    deadline = time.time() + 90
    while time.time() < deadline:
        time.sleep(0.3)
        status, _, text = _call(f"{served}/_dash-update-component?endId={end_id}&cacheKey={start['cacheKey']}&job={start['job']}", body=poll)
        if status != 200:
            return f"HTTP {status}: {text[:200]}"
        if "response" in json.loads(text):
            return json.loads(text)["response"]["result-key"]["data"]
    return "timed out"


def test_pages_starting_the_same_query_at_once_all_get_its_result(served):
    # the same inputs give Dash the same job key: before each job had its own, the first poll to
    # find the result took it away and the other pages never updated. With two workers a job
    # forked by one is polled through either.
    results: list = []
    threads = [threading.Thread(target=_start_and_poll, args=(served, 1, results)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3 and len(set(results)) == 1 and re.fullmatch(r"[0-9a-f]{64}", results[0]), results


# -- the load test ----------------------------------------------------------------------------------
def test_load_test_against_two_workers_reports_no_errors(served, tmp_path):
    out = tmp_path / "load.json"
    proc = subprocess.run([sys.executable, "-m", "dashboard.devtools.loadtest", "--url", served, "--clients", "4", "--seconds", "5", "--json", str(out)],
                          cwd=REPO, capture_output=True, text=True, env=_env(SIGATLAS_AUTH=f"{USER}:{PASSWORD}"), timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    figures = json.loads(out.read_text())
    assert figures["requests"] > 0 and figures["errors"] == 0 and figures["error_kinds"] == {}
    assert figures["by_kind"]["query"]["n"] > 0
    assert f"requests: {figures['requests']:,} in" in proc.stdout and "errors: 0" in proc.stdout


def test_load_test_with_wrong_credentials_cannot_start(served):
    proc = subprocess.run([sys.executable, "-m", "dashboard.devtools.loadtest", "--url", served, "--clients", "1", "--seconds", "1"],
                          cwd=REPO, capture_output=True, text=True, env=_env(SIGATLAS_AUTH=f"{USER}:nope"), timeout=60)
    assert proc.returncode == 2 and "did not answer" in proc.stderr  # even the atlas description is refused


def test_load_test_is_loopback_only():
    proc = subprocess.run([sys.executable, "-m", "dashboard.devtools.loadtest", "--url", "http://192.0.2.1:8050", "--seconds", "1"],
                          cwd=REPO, capture_output=True, text=True, env=_env(), timeout=60)
    assert proc.returncode == 2 and "only targets loopback" in proc.stderr


def test_load_test_summary():
    from dashboard.devtools.loadtest import Record, percentile, summarise

    assert percentile([], 50) is None and percentile([3.0, 1.0, 2.0], 50) == 2.0 and percentile([1.0, 2.0], 99) == 2.0
    records = [Record("query", 0.1, cached=True), Record("query", 0.3), Record("page", 0.2), Record("layout", 1.0, "layout: HTTP 502")]
    s = summarise(records, 2.0)
    assert s["requests"] == 4 and s["requests_per_second"] == 2.0 and s["errors"] == 1
    assert s["error_kinds"] == {"layout: HTTP 502": 1} and s["queries_from_cache"] == 1
    assert s["by_kind"]["query"] == {"n": 2, "p50_ms": 100.0, "p95_ms": 300.0, "p99_ms": 300.0}


# -- issue 16: slow clients, the mixed load -------------------------------------------------------------
def _master_pid(url: str) -> int:
    import psutil

    port = url.rsplit(":", 1)[1]
    return next(p.pid for p in psutil.Process().children() if "gunicorn" in " ".join(p.cmdline()) and f":{port}" in " ".join(p.cmdline()))


def test_slow_clients_do_not_block_the_workers(served):
    """Issue 16, failure 9: with sync workers, four connections sending half a header each held all
    the workers until they closed. Threaded workers give each such connection one thread."""
    import socket

    host, port = "127.0.0.1", int(served.rsplit(":", 1)[1])
    slow = []
    try:
        for _ in range(6):  # more than the two workers of this server
            sock = socket.create_connection((host, port), timeout=5)
            sock.sendall(b"GET /_dash-layout HTTP/1.1\r\nHost: x\r\nX-Half: ")
            slow.append(sock)
        time.sleep(0.5)
        t0 = time.time()
        status, _, text = _call(served + "/api/v1/atlas")
        assert status == 200 and "genes" in json.loads(text)
        assert time.time() - t0 < 30  # answered while the slow connections are still open
        for sock in slow:
            sock.sendall(b"y")
    finally:
        for sock in slow:
            sock.close()


def test_mixed_load_ends_with_no_errors_and_no_worker_replaced(served, tmp_path):
    """Issue 16: API and page queries, the Modules tab, 10,000 null draws (a 400) and a slow client
    at once: no server error, no worker killed (the note gives the 20-client, 60-s figures)."""
    out = tmp_path / "mixed.json"
    proc = subprocess.run([sys.executable, "-m", "dashboard.devtools.loadtest", "--url", served, "--clients", "4", "--seconds", "15", "--mixed",
                           "--server-pid", str(_master_pid(served)), "--json", str(out)],
                          cwd=REPO, capture_output=True, text=True, env=_env(SIGATLAS_AUTH=f"{USER}:{PASSWORD}"), timeout=300)
    figures = json.loads(out.read_text()) if out.is_file() else {}
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert figures["errors"] == 0 and figures["workers"]["replaced"] == 0
    assert figures["slow_client"]["connections"] >= 1
    for kind in ("query", "dash_query", "modules", "big_null"):
        assert figures["by_kind"][kind]["n"] > 0, kind
    assert "workers: 2 before" in proc.stdout


def test_a_damaged_atlas_is_never_served(tiny_build, tmp_path):
    """Issue 16, failure 1: one flipped byte in a study's attributions, or a truncated index file:
    neither server starts; each says in one line which file and how to repair it."""
    import shutil

    for damage in ("flip", "truncate"):
        copy = tmp_path / damage
        shutil.copytree(tiny_build[1], copy)
        study = sorted((copy / "studies").iterdir())[1]
        if damage == "flip":
            target = study / "attr.data.npy"
            raw = bytearray(target.read_bytes())
            raw[-3] ^= 0x01
            target.write_bytes(bytes(raw))
        else:
            target = study / "attr.indices.npy"
            target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
        gunicorn = [sys.executable, "-m", "gunicorn", "-c", "python:dashboard.wsgi", "-b", f"127.0.0.1:{free_port()}"]
        proc = subprocess.run(gunicorn, cwd=REPO, capture_output=True, text=True, env=_env(SIGATLAS_ATLAS=copy), timeout=120)
        assert proc.returncode == 2 and "Booting worker" not in proc.stderr, proc.stderr
        line = next(ln for ln in proc.stderr.splitlines() if ln.startswith("error:"))
        assert f"studies/{study.name}/{target.name}" in line and "--rewrite" in line and "not served" in line
        dash = subprocess.run([sys.executable, "-m", "dashboard", "--atlas", str(copy), "--port", str(free_port())], cwd=REPO,
                              capture_output=True, text=True, env=_env(), timeout=120)
        assert dash.returncode != 0 and f"studies/{study.name}/{target.name}" in dash.stderr and "--rewrite" in dash.stderr
        assert "Traceback" not in dash.stderr
