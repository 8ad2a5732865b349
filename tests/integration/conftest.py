from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


@pytest.fixture(params=["postgres", "sqlite"])
def db(request: pytest.FixtureRequest) -> str:
    return str(request.param)
