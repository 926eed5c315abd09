"""Which carried chat model answers best: a small evaluation run over each of them.

Four kinds of task, each scored by a check that cannot be argued with:
- questions with known answers (the answer must contain the expected word);
- tools offered with ``tool_choice: "auto"``: the right function with the right
  arguments when a tool is needed, and no call when none is;
- tool result round trips: the answer after a result must use the result and
  must not call again;
- ``json_schema`` structured output: the reply validates against the schema and
  holds the fact asked for.

Every task runs through ``LlamaEngine``, so it measures what Hearth's chat
endpoint returns (templates, grammars and the tool-call recognition included),
at temperature 0. Prints a Markdown table for docs/benchmarks.md.

    .venv/bin/python bench/eval_chat_models.py [MODEL ...]
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jsonschema

from hearth.catalog.catalog import Catalog
from hearth.catalog.provision import ModelStore
from hearth.engines.llama import LlamaEngine
from hearth.settings import Settings

Check = Callable[[dict[str, Any]], bool]

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
MULTIPLY = {"type": "function", "function": {
    "name": "multiply", "description": "Multiply two integers exactly",
    "parameters": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                   "required": ["a", "b"]}}}
SEARCH = {"type": "function", "function": {
    "name": "search_orders", "description": "Find a customer's orders by email address",
    "parameters": {"type": "object", "properties": {"email": {"type": "string"}}, "required": ["email"]}}}
TOOLS = [WEATHER, MULTIPLY, SEARCH]


@dataclass
class Task:
    kind: str
    request: dict[str, Any]
    check: Check


def _user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def _says(*words: str) -> Check:
    def check(message: dict[str, Any]) -> bool:
        text = (message.get("content") or "").lower()
        return not message.get("tool_calls") and any(word.lower() in text for word in words)
    return check


def _calls(name: str, **arguments: Any) -> Check:
    def check(message: dict[str, Any]) -> bool:
        calls = message.get("tool_calls") or []
        if len(calls) != 1 or calls[0]["function"]["name"] != name:
            return False
        got = json.loads(calls[0]["function"]["arguments"])
        return all(str(got.get(key, "")).lower() == str(value).lower() for key, value in arguments.items())
    return check


def _validates(schema: dict[str, Any], key: str, *words: str) -> Check:
    def check(message: dict[str, Any]) -> bool:
        try:
            value = json.loads(message.get("content") or "")
            jsonschema.validate(value, schema)
        except (ValueError, jsonschema.ValidationError):
            return False
        return any(word.lower() in str(value[key]).lower() for word in words)
    return check


def _round_trip(question: str, tool: dict[str, Any], arguments: dict[str, Any], result: str) -> dict[str, Any]:
    call = {"id": "call_eval", "type": "function",
            "function": {"name": tool["function"]["name"], "arguments": json.dumps(arguments)}}
    return {"messages": [*_user(question), {"role": "assistant", "content": None, "tool_calls": [call]},
                         {"role": "tool", "tool_call_id": "call_eval", "content": result}],
            "tools": TOOLS}


def _schema(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(properties),
            "additionalProperties": False}


def tasks() -> list[Task]:
    knowledge = [
        ("What is the capital of France?", ("paris",)),
        ("What is 7 multiplied by 8?", ("56",)),
        ("Which planet is the largest in our solar system?", ("jupiter",)),
        ("What is the chemical symbol for gold?", ("au",)),
        ("Who wrote Romeo and Juliet?", ("shakespeare",)),
        ("At what temperature in Celsius does water boil at sea level?", ("100",)),
        ("How many days are there in a leap year?", ("366",)),
        ("What is the largest ocean on Earth?", ("pacific",)),
        ("In which programming language is a list comprehension written as [x for x in y]?", ("python",)),
        ("What gas do plants absorb from the air for photosynthesis?", ("carbon dioxide", "co2")),
    ]
    auto = [
        ("What's the weather in Paris?", _calls("get_weather", city="Paris")),
        ("Is it raining in Tokyo right now?", _calls("get_weather", city="Tokyo")),
        ("Use the tool to multiply 1234 by 5678.", _calls("multiply", a=1234, b=5678)),
        ("Find the orders of ann@example.com.", _calls("search_orders", email="ann@example.com")),
        ("What is the capital of Italy?", _says("rome")),
        ("Write a haiku about autumn.", lambda m: not m.get("tool_calls") and bool(m.get("content"))),
    ]
    trips = [
        ("What's the weather in Paris?", WEATHER, {"city": "Paris"},
         '{"temperature_c": 17, "sky": "light rain"}', ("17",)),
        ("What is 1234 times 5678?", MULTIPLY, {"a": 1234, "b": 5678}, "7006652", ("7006652", "7,006,652")),
        ("Find the orders of ann@example.com.", SEARCH, {"email": "ann@example.com"},
         '[{"order": "A-17", "status": "shipped"}]', ("a-17",)),
        ("How warm is it in Cairo?", WEATHER, {"city": "Cairo"}, '{"temperature_c": 34}', ("34",)),
    ]
    structured = [
        ("Give the capital of Germany.", _schema({"capital": {"type": "string"}}), "capital", ("berlin",)),
        ("Name the author of Hamlet and the year he was born.",
         _schema({"author": {"type": "string"}, "born": {"type": "integer"}}), "author", ("shakespeare",)),
        ("Classify the sentiment of: 'I love this phone, it is wonderful.'",
         _schema({"sentiment": {"enum": ["positive", "negative", "neutral"]}}), "sentiment", ("positive",)),
        ("What is the boiling point of water in Celsius?",
         _schema({"celsius": {"type": "number"}}), "celsius", ("100",)),
    ]
    return ([Task("knowledge", {"messages": _user(q), "max_tokens": 48}, _says(*a)) for q, a in knowledge]
            + [Task("auto tools", {"messages": _user(q), "tools": TOOLS, "tool_choice": "auto",
                                   "max_tokens": 96}, check) for q, check in auto]
            + [Task("tool result", {**_round_trip(q, tool, args, result), "max_tokens": 64}, _says(*a))
               for q, tool, args, result, a in trips]
            + [Task("json_schema", {"messages": _user(q), "max_tokens": 64, "response_format": {
                "type": "json_schema", "json_schema": {"name": "answer", "strict": True, "schema": schema}}},
                _validates(schema, key, *a)) for q, schema, key, a in structured])


def evaluate(model_id: str) -> dict[str, Any]:
    settings = Settings()
    spec = Catalog.load().resolve(model_id)
    store = ModelStore(settings.resolved_models_dir)
    if not store.is_present(spec):
        store.pull(spec)
    (gguf,) = [store.dir_for(spec) / f.path for f in spec.files if f.path.endswith(".gguf")]
    engine = LlamaEngine(gguf, n_ctx=4096, n_parallel=1, threads=settings.inference_threads or os.cpu_count() or 2)
    scores: dict[str, list[bool]] = {}
    started = time.perf_counter()
    try:
        for task in tasks():
            reply = engine.chat({**task.request, "temperature": 0, "seed": 7})
            ok = task.check(reply["choices"][0]["message"])
            scores.setdefault(task.kind, []).append(ok)
            if not ok:
                print(f"  {model_id} missed [{task.kind}] {task.request['messages'][0]['content']!r}: "
                      f"{json.dumps(reply['choices'][0]['message'])[:160]}", file=sys.stderr)
    finally:
        engine.close()
    return {"model": model_id, "scores": scores, "seconds": time.perf_counter() - started}


def main() -> None:
    chat_models = [spec.id for spec in Catalog.load().models if spec.kind == "chat" and spec.engine == "llama"]
    results = [evaluate(model) for model in (sys.argv[1:] or chat_models)]
    kinds = list(results[0]["scores"])
    print("| model | " + " | ".join(kinds) + " | all | seconds |")
    print("|---|" + "---|" * (len(kinds) + 2))
    for result in results:
        cells = [f"{sum(s)}/{len(s)}" for s in result["scores"].values()]
        passed = sum(sum(s) for s in result["scores"].values())
        total = sum(len(s) for s in result["scores"].values())
        print(f"| {result['model']} | " + " | ".join(cells) + f" | {passed}/{total} | {result['seconds']:.0f} |")


if __name__ == "__main__":
    main()
