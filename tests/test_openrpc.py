"""rpc.discover: OpenRPC documents of both method tables (issue 12, acceptance 3).

The documents are validated against the OpenRPC meta-schema (vendored in
tests/openrpc/, with its licence) by ``jsonschema``; every method of the tables must
appear, and a method or param without a description is refused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from rocketws.core import openrpc, rpc
from rocketws.core.openrpc import MissingDescription
from rocketws.core.rpc import Method, Param
from rocketws.core.spec_examples import spec_example_methods

from .support import ServerProcess
from .wsraw import RawWebSocket

SCHEMAS = Path(__file__).parent / "openrpc"
META = json.loads((SCHEMAS / "openrpc-meta-schema-1.14.9.json").read_text())
JSON_SCHEMA_META = json.loads((SCHEMAS / "json-schema-tools-meta-schema-1.8.0.json").read_text())
REGISTRY: Registry[Any] = Registry().with_resources(
    [
        (uri, Resource.from_contents(JSON_SCHEMA_META, default_specification=DRAFT7))
        for uri in ("https://meta.json-schema.tools", "https://meta.json-schema.tools/")
    ]
)


def validate(document: dict[str, Any]) -> None:
    jsonschema.Draft7Validator(META, registry=REGISTRY).validate(document)


TABLES = {
    "websocket": rpc.client_methods,
    "backend": rpc.backend_methods,
    "spec examples": spec_example_methods,
}


@pytest.mark.parametrize("endpoint", ["websocket", "backend"])
def test_discover_document_validates_against_the_meta_schema(endpoint: str) -> None:
    table = rpc.client_methods if endpoint == "websocket" else rpc.backend_methods
    document = rpc.discover_document(endpoint, table)
    validate(document)
    assert document["openrpc"] == openrpc.OPENRPC_VERSION
    assert [m["name"] for m in document["methods"]] == sorted(table)


def test_meta_schema_refuses_a_broken_document() -> None:
    # The validator can fail: a method without params, a param schema that is no schema.
    document = rpc.discover_document("backend", rpc.backend_methods)
    del document["methods"][0]["params"]
    with pytest.raises(jsonschema.ValidationError):
        validate(document)
    document = rpc.discover_document("backend", rpc.backend_methods)
    document["methods"][0]["params"] = [{"name": "x", "schema": {"type": 5}}]
    with pytest.raises(jsonschema.ValidationError):
        validate(document)


@pytest.mark.parametrize("name", sorted(TABLES))
def test_every_method_and_param_of_the_tables_is_described(name: str) -> None:
    for method in TABLES[name].values():
        assert method.summary, f"{name}: {method.name} has no summary"
        for param in (*method.params, *((method.rest,) if method.rest else ())):
            assert param.doc, f"{name}: {method.name} param {param.name} has no doc"
    validate(openrpc.document(TABLES[name], title=name, version="1"))


def test_a_method_added_without_a_description_is_refused() -> None:
    def f(_ctx: object, x: Any) -> None:
        return None

    with pytest.raises(MissingDescription, match="no summary"):
        openrpc.document(rpc.table(Method("f", f, (Param("x", doc="x"),))), title="t", version="1")
    with pytest.raises(MissingDescription, match="param 'x' has no doc"):
        openrpc.document(rpc.table(Method("f", f, (Param("x"),), "F.")), title="t", version="1")


def test_method_objects_carry_schemas_defaults_and_errors() -> None:
    document = rpc.discover_document("backend", rpc.backend_methods)
    by_name = {m["name"]: m for m in document["methods"]}
    disconnect = by_name["disconnect"]
    assert [(p["name"], p["required"]) for p in disconnect["params"]] == [
        ("user", True),
        ("code", False),
        ("reason", False),
    ]
    assert disconnect["params"][1]["schema"] == {"type": "integer", "minimum": 4000, "maximum": 4999}
    codes = {e["code"] for e in disconnect["errors"]}
    assert {-32602, -32603} <= codes and -32002 in codes
    assert by_name["emit"]["result"]["schema"]["properties"]["delivered"] == {"type": "integer", "minimum": 0}


def test_extra_method_descriptors_are_listed_after_the_table() -> None:
    extra = {"name": "app.time", "summary": "Proxied.", "params": [], "result": {"name": "r", "schema": {}}}
    document = rpc.discover_document("websocket", rpc.client_methods, [extra])
    validate(document)
    assert document["methods"][-1] == extra


def test_discover_on_both_endpoints_of_a_server(start_server: Any) -> None:
    srv: ServerProcess = start_server(ROCKETWS_SPEC_EXAMPLE_METHODS="1")
    backend = srv.result("rpc.discover")
    validate(backend)
    assert {m["name"] for m in backend["methods"]} == set(rpc.backend_methods) | set(spec_example_methods)
    ws = RawWebSocket(srv.ws_port)
    client = ws.call("rpc.discover", 1)["result"]
    ws.close()
    validate(client)
    assert {m["name"] for m in client["methods"]} == set(rpc.client_methods)
    assert "emit" not in {m["name"] for m in client["methods"]}
    assert requests.get(srv.ms_url + "health", timeout=10).status_code == 200


def test_proxied_patterns_are_method_objects_that_validate() -> None:
    patterns = ["time.now", "app.*", "subscribe", "app.*", "*"]
    extra = openrpc.proxied_methods(patterns, rpc.client_methods)
    document = rpc.discover_document("websocket", rpc.client_methods, extra)
    validate(document)
    names = [m["name"] for m in document["methods"]]
    assert len(names) == len(set(names))  # unique, as OpenRPC asks
    assert names[len(rpc.client_methods) :] == ["time.now", "app.*", "rpc:subscribe", "*"]
    by_pattern = {m[openrpc.PROXIED]["pattern"]: m for m in extra}
    assert all(m[openrpc.PROXIED]["via"] == "rpc" for m in extra)
    assert "through rpc" in by_pattern["app.*"]["summary"]
    assert {e["code"] for e in by_pattern["*"]["errors"]} >= {-32041, -32042, -32043, -32044, -32045}


def test_discover_on_the_websocket_lists_the_proxied_patterns(start_server: Any) -> None:
    routes = [
        {"pattern": "time.now", "handler": "tests.proxy_app:now"},
        {"pattern": "billing.*", "url": "http://127.0.0.1:9/rpc"},
    ]
    srv: ServerProcess = start_server(
        ROCKETWS_RPC_PROXY_ROUTES=json.dumps(routes), ROCKETWS_RPC_PROXY_URL="http://127.0.0.1:9/all"
    )
    ws = RawWebSocket(srv.ws_port)
    client = ws.call("rpc.discover", 1)["result"]
    ws.close()
    validate(client)
    proxied = [m for m in client["methods"] if openrpc.PROXIED in m]
    assert [m["name"] for m in proxied] == ["time.now", "billing.*", "*"]  # routing order, catch-all last
    assert {m["name"] for m in client["methods"]} == set(rpc.client_methods) | {"time.now", "billing.*", "*"}
    assert "127.0.0.1:9" not in json.dumps(client) and "proxy_app" not in json.dumps(client)
    backend = srv.result("rpc.discover")
    assert not [m for m in backend["methods"] if openrpc.PROXIED in m]
