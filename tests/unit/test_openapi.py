"""The OpenAPI document describes what every JSON route answers (no service needed: the
document is built without connecting to anything)."""

from __future__ import annotations

from typing import Any

import redis
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

from control.api.app import create_app
from control.campaigns.service import Control
from shared.gate import Gate
from shared.keys import Keys
from shared.settings import Settings


def _document() -> dict[str, Any]:
    settings = Settings(database_url="sqlite://", redis_url="redis://127.0.0.1:1/0")
    keys = Keys(settings.namespace)
    sessions = sessionmaker(create_engine(settings.database_url))
    client = redis.Redis.from_url(settings.redis_url)
    return create_app(Control(settings, sessions, client, Gate(client, keys), keys)).openapi()


def _described(schema: dict[str, Any], components: dict[str, Any]) -> bool:
    """An object with properties, directly, through a reference or in each alternative."""
    if "$ref" in schema:
        return _described(components[schema["$ref"].rsplit("/", 1)[-1]], components)
    if "anyOf" in schema:
        return all(_described(s, components) for s in schema["anyOf"])
    return bool(schema.get("properties"))


def test_every_json_route_describes_its_answer() -> None:
    doc = _document()
    components = doc["components"]["schemas"]
    seen = []
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            answers = {code: r for code, r in op["responses"].items() if code.startswith("2")}
            assert answers, (method, path)
            for code, answer in answers.items():
                schema = answer.get("content", {}).get("application/json", {}).get("schema", {})
                assert _described(schema, components), (method, path, code, schema)
            seen.append((method, path))
    assert len(seen) >= 25, seen


def test_readiness_describes_its_503_too() -> None:
    responses = _document()["paths"]["/readyz"]["get"]["responses"]
    ready, unready = (responses[c]["content"]["application/json"]["schema"] for c in ("200", "503"))
    assert ready == unready == {"$ref": "#/components/schemas/Readiness"}
