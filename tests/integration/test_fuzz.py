"""Property-based fuzzing of the API from its own OpenAPI schema (schemathesis).

Every operation gets generated requests, valid and invalid, sent as a signed-in caller of
one organisation while another organisation's campaign exists: no answer is a 5xx, and no
answer carries the other organisation's data.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.support.stack import TestStack

SECRET_NAME = "globex-secret-campaign-name"


@pytest.fixture
def fuzz_target(make_stack: Any) -> Any:
    stack: TestStack = make_stack().start(loops=False)
    assert stack.stack is not None
    globex = stack.api(
        "POST", "/tokens", expect=201, json={"name": "globex", "role": "admin", "org": "globex"}
    )["token"]
    other = stack.http.post(
        "/api/v1/campaigns",
        json={"name": SECRET_NAME},
        headers={"Authorization": f"Bearer {globex}"},
    )
    assert other.status_code == 201, other.text
    # The fuzzing caller: an admin of acme (may do everything in acme, nothing elsewhere).
    token = stack.api(
        "POST", "/tokens", expect=201, json={"name": "fuzzer", "role": "admin", "org": "acme"}
    )["token"]
    stack.fuzz_headers = {"Authorization": f"Bearer {token}"}  # type: ignore[attr-defined]
    return stack


def test_no_5xx_and_nothing_of_another_organisation(fuzz_target: TestStack) -> None:
    assert fuzz_target.stack is not None
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzz_target.stack.app)
    headers = fuzz_target.fuzz_headers  # type: ignore[attr-defined]
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10

    for op in operations:

        @given(case=op.as_strategy())
        @settings(
            max_examples=40,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def check(case: Any) -> None:
            if case.method.upper() == "POST" and case.path == "/api/v1/emergency-stop":
                case.body = {"scope": "org"}  # never stop the other tests' stacks
            response = case.call(headers=headers)
            assert response.status_code < 500, (case.method, case.path, response.text[:500])
            assert SECRET_NAME not in response.text, (case.method, case.path)

        check()
