"""The free-text check and the terminal escape (shared/text.py), and the schemas using it."""

from __future__ import annotations

import pytest
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from control.api.errors import validation_message
from control.api.schemas import CampaignCreate, EmergencyIn, TokenCreate, TransitionIn
from control.cli.output import Painted, table
from shared.text import Text, problem, problem_in, terminal

HOSTILE = {
    "NUL": "\x00",
    "ESC": "\x1b",
    "DEL": "\x7f",
    "C1 CSI": "\x9b",
    "tab": "\t",
    "newline": "\n",
    "bidi override": "\u202e",
    "zero-width space": "\u200b",
    "line separator": "\u2028",
    "lone surrogate": "\ud800",
    "tag character": "\U000e0001",
}


@pytest.mark.parametrize("name", HOSTILE)
def test_each_control_format_and_surrogate_character_is_refused_with_its_code_and_place(
    name: str,
) -> None:
    ch = HOSTILE[name]
    assert problem(f"ab{ch}c") == (
        f"must not contain control or format characters (found U+{ord(ch):04X} at 2)"
    )


def test_visible_text_in_any_script_passes() -> None:
    for ok in ("Winter promo", "Zoë Ørsted", "日本語の名前", "مرحبا", "emoji 🎉", "a\u00a0b", ""):
        assert problem(ok) is None, ok


def test_a_bad_string_deep_in_attributes_is_named_by_its_path() -> None:
    assert problem_in({"tier": "gold", "notes": ["ok", "x\x1by"]}, "attributes") == (
        "attributes.notes[1]: must not contain control or format characters (found U+001B at 1)"
    )
    assert problem_in({"k\x00": 1}, "attributes") == (
        "attributes (a key): must not contain control or format characters (found U+0000 at 1)"
    )
    assert problem_in({"n": 3, "b": True, "z": None}, "attributes") is None


def _message(model: type[BaseModel], data: dict[str, object]) -> str:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(data)
    return validation_message(RequestValidationError(caught.value.errors()))


def test_every_free_text_field_of_the_api_names_itself_when_refused() -> None:
    bad = "must not contain control or format characters"
    assert _message(TransitionIn, {"reason": "cal\x00l"}) == f"reason: {bad} (found U+0000 at 3)"
    assert _message(TransitionIn, {"actor": "\u202eevil"}) == f"actor: {bad} (found U+202E at 0)"
    assert _message(EmergencyIn, {"reason": "x\x1b[2J"}) == f"reason: {bad} (found U+001B at 1)"
    assert _message(CampaignCreate, {"name": "promo\x85"}) == f"name: {bad} (found U+0085 at 5)"
    token = {"name": "bot\n", "role": "viewer"}
    assert _message(TokenCreate, token) == f"name: {bad} (found U+000A at 3)"


def test_length_limits_still_say_characters_beside_the_text_check() -> None:
    assert _message(TransitionIn, {"reason": "x" * 1001}) == (
        "reason: String should have at most 1000 characters"
    )


def test_text_is_a_pydantic_type_any_model_can_use() -> None:
    class Note(BaseModel):
        text: Text

    assert Note(text="fine").text == "fine"
    with pytest.raises(ValidationError):
        Note(text="not\x07fine")


def test_the_terminal_escape_writes_every_unsafe_character_as_an_escape() -> None:
    assert terminal("red \x1b[31m alert\x9b\u202e\U000e0001") == (
        "red \\x1b[31m alert\\x9b\\u202e\\U000e0001"
    )
    assert terminal("Zoë 日本 🎉") == "Zoë 日本 🎉"
    assert terminal(42) == "42"


def test_a_cli_table_escapes_every_cell_and_colours_only_what_it_paints(
    capsys: pytest.CaptureFixture[str],
) -> None:
    table([["1", "x\x1b]0;owned\x07", Painted("paused", "1;33")]], ["ID", "NAME", "STATUS"])
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out  # not a terminal: no colour either
    assert "x\\x1b]0;owned\\x07" in out and "paused" in out
