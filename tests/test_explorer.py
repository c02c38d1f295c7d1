"""The explorer's routes, headers and files, when it is served and when not, and the RPC
methods it reads (contract_models, validator_activity), against real node processes: all
that needs no browser (tests/test_explorer_browser.py loads the pages in Chromium)."""
from __future__ import annotations

import configparser
import http.client
import json
import re
from pathlib import Path

import pytest

import net.explorer as explorer
from node import parse_args
from tests import explorer_scenario as sc
from tests.nodeproc import NodeProcess

ROOT = Path(__file__).resolve().parent.parent


def get(port: int, path: str, method: str = "GET", body: bytes | None = None) -> tuple[int, dict, bytes]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request(method, path, body, {"Content-Type": "application/json"} if body else {})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def rpc(port: int, method: str, params) -> dict:
    status, _, raw = get(port, "/", "POST", json.dumps({"jsonrpc": "2.0", "id": 1, "method": method,
                                                        "params": params}).encode())
    assert status == 200
    return json.loads(raw)


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    node = NodeProcess(tmp_path_factory.mktemp("explorer") / "node", block_time=0.2).start()
    with node.client() as c:
        scenario = sc.build(c)
    yield node, scenario
    node.kill()


def test_page_and_files_served_with_csp(chain):
    node, _ = chain
    status, headers, body = get(node.port, "/explorer")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert headers["content-security-policy"] == explorer.CSP
    assert "script-src 'self'" in explorer.CSP and "unsafe-inline" not in explorer.CSP
    assert headers["x-content-type-options"] == "nosniff" and headers["x-frame-options"] == "DENY"
    assert b"<script" in body and b"<script>" not in body  # no inline script: the CSP would refuse it
    for name, ctype in explorer.FILES.items():
        assert f"/explorer/static/{name}".encode() in body
        status, headers, data = get(node.port, f"/explorer/static/{name}")
        assert status == 200 and headers["content-type"].startswith(ctype)
        assert data == (explorer.STATIC / name).read_bytes()
        assert headers["content-security-policy"] == explorer.CSP
    assert get(node.port, "/explorer/")[0] == 302
    assert json.loads(get(node.port, "/")[2])["endpoints"]["GET /explorer"] == "the block explorer page"


@pytest.mark.parametrize("path", ["/explorer/static/index.html", "/explorer/static/..%2f__init__.py",
                                  "/explorer/static/nope.js", "/explorer/static/%2e%2e"])
def test_only_the_listed_files_are_served(chain, path):
    node, _ = chain
    status, _, body = get(node.port, path)
    assert status == 404
    assert b"import" not in body


def test_script_never_parses_chain_data_as_html():
    """Contract names, events and revert reasons are attacker-chosen: the script builds the
    DOM from text nodes only (the browser test shows hostile strings as text)."""
    js = (explorer.STATIC / "explorer.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function",
                 "DOMParser", "createContextualFragment"):
        assert sink not in js, sink


def test_static_files_are_in_the_wheel():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    globs = cfg["options.package_data"]["net.explorer"].split(",")
    shipped = {p.name for g in globs for p in (ROOT / "net" / "explorer").glob(g.strip())}
    assert {"index.html", *explorer.FILES} <= shipped
    refs = set(re.findall(r'/explorer/static/([\w.]+)', (explorer.STATIC / "index.html").read_text()))
    assert refs == set(explorer.FILES)


def test_setting_follows_the_rpc_host():
    assert explorer.setting("auto", "127.0.0.1").on and explorer.setting("auto", "::1").on
    assert explorer.setting("auto", "localhost").on
    off = explorer.setting("auto", "0.0.0.0")
    assert not off.on and "--explorer on" in off.reason and "0.0.0.0" in off.reason
    assert explorer.setting("on", "0.0.0.0").on
    assert not explorer.setting("off", "127.0.0.1").on
    with pytest.raises(ValueError):
        explorer.setting("yes", "127.0.0.1")
    assert parse_args(["--rpc-host", "0.0.0.0", "--explorer", "on"]).explorer == "on"
    assert parse_args([]).explorer == "auto"
    with pytest.raises(SystemExit):
        parse_args(["--explorer", "maybe"])


def test_off_answers_404_with_the_reason(tmp_path):
    node = NodeProcess(tmp_path / "off", "--explorer", "off").start()
    try:
        for path in ("/explorer", "/explorer/static/explorer.js"):
            status, _, body = get(node.port, path)
            assert status == 404
            assert body.decode() == "the explorer is off on this node (--explorer off)\n"
        assert get(node.port, "/health")[0] == 200  # the rest of the node is served as before
        status, _, body = get(node.port, "/")  # the index says why, beside the other endpoints
        endpoints = json.loads(body)["endpoints"]
        assert endpoints["GET /explorer"] == "off: the explorer is off on this node (--explorer off)"
        assert {"POST /", "GET /ws", "GET /metrics", "GET /health"} <= set(endpoints)
    finally:
        node.kill()


def test_contract_models_finds_the_model_and_the_loss_history(chain):
    node, s = chain
    r = rpc(node.port, "contract_models", {"contract": s.training})["result"]
    assert r["models"] == [{"key": "model", "kind": "softmax", "layers": [4, 3], "size": 15}]
    (loss,) = [x for x in r["series"] if x["name"] == "loss"]
    stored = [rpc(node.port, "storage", {"contract": s.training, "key": {"tuple": ["loss", i]}})["result"]["value"]
              for i in range(s.steps)]
    assert loss["points"] == [[i, v] for i, v in enumerate(stored)] and len(stored) == 6
    assert r["truncated"] is False and r["scanned"] >= 6
    plain = rpc(node.port, "contract_models", {"contract": s.hostile})["result"]
    assert plain["models"] == [] and plain["series"] == []


@pytest.mark.parametrize("params,code,text", [
    ({"contract": "0x12"}, -32602, "contract: address must be 40 hex digits"),
    ({"contract": 5}, -32602, "contract: address must be a string"),
    ({"contract": "0x" + "ab" * 20}, -32001, "no contract at 0x" + "ab" * 20),
    ({}, -32602, "missing"),
    ({"contract": "0x" + "ab" * 20, "x": 1}, -32602, "unexpected keyword"),
])
def test_contract_models_bad_input(chain, params, code, text):
    node, _ = chain
    err = rpc(node.port, "contract_models", params)["error"]
    assert err["code"] == code and text in err["message"], err


def test_validator_activity_counts_proposals_and_votes(chain):
    node, _ = chain
    r = rpc(node.port, "validator_activity", {"blocks": 5})["result"]
    assert r["to_height"] - r["from_height"] == 4
    assert [p["height"] for p in r["proposers"]] == list(range(r["from_height"], r["to_height"] + 1))
    vs = rpc(node.port, "validators", {"height": r["to_height"]})["result"]["validators"]
    (row,) = r["validators"]
    assert row["address"] == vs[0]["address"] == r["proposers"][0]["proposer"]
    assert row["proposed"] == 5 and row["missed"] == 0 and row["last_missed"] is None
    assert 4 <= row["signed"] <= 5  # the tip's commit may not be stored yet


@pytest.mark.parametrize("blocks", [0, -1, 1001, "5", 1.5, True, None])
def test_validator_activity_bad_input(chain, blocks):
    node, _ = chain
    err = rpc(node.port, "validator_activity", {"blocks": blocks})["error"]
    assert err["code"] == -32602 and "blocks must be" in err["message"], err
