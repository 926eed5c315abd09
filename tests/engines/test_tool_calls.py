"""Tool calls written as text: which replies are calls, and which only repeat an answered one."""

from __future__ import annotations

import json

import pytest

from hearth.engines.tool_calls import could_be_call, parse_calls, repeats_answered_call

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object", "required": ["city"],
                                          "properties": {"city": {"type": "string"}}}}}
MULTIPLY = {"type": "function", "function": {"name": "multiply", "parameters": {"type": "object"}}}
TOOLS = [WEATHER, MULTIPLY]


@pytest.mark.parametrize("text", [
    '{"name": "get_weather", "arguments": {"city": "Paris"}}',
    '```json\n{\n  "name": "get_weather",\n  "arguments": {"city": "Paris"}\n}\n```',
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
    '{"name": "get_weather", "parameters": {"city": "Paris"}}',
    '{"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\"}"}',
])
def test_a_call_in_any_form_the_models_write(text: str) -> None:
    (call,) = parse_calls(text, TOOLS)
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}


def test_several_calls_as_a_list_or_one_per_line() -> None:
    listed = parse_calls('[{"name": "get_weather", "arguments": {"city": "Oslo"}},'
                         ' {"name": "multiply", "arguments": {"a": 2, "b": 3}}]', TOOLS)
    lines = parse_calls('{"name": "get_weather", "arguments": {"city": "Oslo"}}\n'
                        '{"name": "multiply", "arguments": {"a": 2, "b": 3}}', TOOLS)
    assert [c["function"]["name"] for c in listed] == ["get_weather", "multiply"]
    assert [c["function"]["arguments"] for c in listed] == [c["function"]["arguments"] for c in lines]


@pytest.mark.parametrize("text", [
    "The weather in Paris is mild.",
    '{"name": "tell_joke", "arguments": {}}',  # not a declared function
    '{"name": "get_weather", "arguments": {}}',  # a required argument missing
    '{"name": "get_weather", "arguments": {"city": "Paris"}, "note": "x"}',  # more than a call
    '{"name": "get_weather", "arguments": {"city": "Paris"}} and then some words',
    '{"city": "Paris", "temperature_c": 17}',  # a JSON answer, not a call
    '{"name": "get_weather", "arguments": {"city": ',  # cut off
])
def test_prose_and_other_json_stay_content(text: str) -> None:
    assert parse_calls(text, TOOLS) is None


def test_a_reply_that_may_still_become_a_call_is_held() -> None:
    assert could_be_call("") and could_be_call("  ") and could_be_call('{"na')
    assert could_be_call("```") and could_be_call("<tool_call>")
    assert not could_be_call("The") and not could_be_call("  Sure")


def _answered(name: str, arguments: dict) -> list[dict]:
    return [{"role": "user", "content": "?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": name, "arguments": json.dumps(arguments)}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "7006652"}]


def test_repeating_the_answered_function_is_spotted_in_any_shape() -> None:
    messages = _answered("multiply", {"a": 1234, "b": 5678})
    mangled = parse_calls('{"name": "multiply", "arguments": {"a": 7006652, "b": 5678}}', TOOLS)
    echoed = '{"name": "multiply", "arguments": {"a": 1234, "b": 5678}}\n{"result": 7006652}'

    assert repeats_answered_call("", mangled, messages)
    assert repeats_answered_call(echoed, None, messages)
    assert repeats_answered_call('{{"name": "multiply", "arguments": {"a": 1234}}', None, messages)
    assert not repeats_answered_call("The product is 7006652.", None, messages)


def test_a_new_step_or_a_fresh_question_is_not_a_repeat() -> None:
    other = parse_calls('{"name": "get_weather", "arguments": {"city": "Oslo"}}', TOOLS)
    answered = _answered("multiply", {"a": 1, "b": 2})
    asked_again = [*answered, {"role": "assistant", "content": "2"},
                   {"role": "user", "content": "and 2 times 3?"}]
    again = parse_calls('{"name": "multiply", "arguments": {"a": 2, "b": 3}}', TOOLS)

    assert not repeats_answered_call("", other, answered)
    assert not repeats_answered_call("", again, asked_again)
