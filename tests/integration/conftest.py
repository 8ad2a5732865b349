from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.stack import TestStack

pytestmark = pytest.mark.integration


@pytest.fixture(params=["postgres", "sqlite"])
def db(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_stack(services: None, tmp_path: Path) -> Iterator[type[TestStack]]:
    made: list[TestStack] = []

    def factory(db: str = "postgres", **overrides: object) -> TestStack:
        stack = TestStack(tmp_path / f"s{len(made)}", db, **overrides)
        made.append(stack)
        return stack

    (tmp_path / "s0").mkdir()
    for i in range(1, 4):
        (tmp_path / f"s{i}").mkdir()
    yield factory  # type: ignore[misc]
    for stack in made:
        stack.close()
