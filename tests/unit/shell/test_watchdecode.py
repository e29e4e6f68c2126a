"""kopf's watch stream decodes with orjson once the operator has switched it over."""

from __future__ import annotations

import inspect

import orjson
from kopf._cogs.clients import api as kopf_api

from kubedag.shell.watchdecode import decode_watch_events_with_orjson


def test_kopf_decodes_watch_lines_with_json_loads_of_its_module() -> None:
    """What the switch relies on: stream() calls its module's json.loads and nothing else of
    json. A kopf upgrade that changes this must be looked at again."""
    source = inspect.getsource(kopf_api)
    assert source.count("json.") == 1
    assert "json.loads(line.decode('utf-8'))" in inspect.getsource(kopf_api.stream)


def test_the_switch_makes_kopf_decode_with_orjson() -> None:
    original = kopf_api.json
    try:
        decode_watch_events_with_orjson()
        assert kopf_api.json.loads is orjson.loads
        line = b'{"type": "MODIFIED", "object": {"metadata": {"name": "r\\u00e9"}, "n": [1, 2.5]}}'
        assert kopf_api.json.loads(line.decode("utf-8")) == {
            "type": "MODIFIED", "object": {"metadata": {"name": "ré"}, "n": [1, 2.5]}}
    finally:
        kopf_api.json = original
