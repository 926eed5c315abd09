"""The Responses API's semantic stream events, numbered in order.

``StreamShaper`` turns the chat service's chunks into the events clients
consume (``response.created`` ... ``response.output_text.delta`` ...
``response.completed``): each output item is announced when its first delta
arrives, filled by deltas, and closed with its final shape before the
response ends. ``replay`` tells a stored response as the same sequence of
events, with its text as one delta per part, for GET ``?stream=true``.
"""

from __future__ import annotations

import copy
from typing import Any

from hearth.chat.protocol import ChatCompletionChunk
from hearth.responses.translate import Item, function_call_item, logprobs, message_item
from hearth.store.ids import new_id

Event = dict[str, Any]


class Sequencer:
    """Numbers events from 0 in the order they are made."""

    def __init__(self) -> None:
        self.next = 0

    def event(self, kind: str, **fields: Any) -> Event:
        event = {"type": kind, **fields, "sequence_number": self.next}
        self.next += 1
        return event


def lifecycle(seq: Sequencer, kind: str, response: dict[str, Any]) -> Event:
    return seq.event(kind, response=copy.deepcopy(response))


class StreamShaper:
    """Chat chunks in, semantic events out; ``output`` holds the items as they stand."""

    def __init__(self, seq: Sequencer) -> None:
        self.seq = seq
        self.output: list[Item] = []
        self.finish_reason: str | None = None
        self.usage: tuple[int, int] | None = None
        self._message: int | None = None  # output index of the open message, if any
        self._calls: dict[int, int] = {}  # the chat's tool call index -> output index

    def chunk(self, chunk: ChatCompletionChunk) -> list[Event]:
        events: list[Event] = []
        if chunk.usage is not None:
            self.usage = (chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
        for choice in chunk.choices:
            if choice.index != 0:
                continue
            delta = choice.delta
            if delta.content:
                events.extend(self._text(delta.content, logprobs(choice.logprobs)))
            for call in delta.tool_calls or []:
                events.extend(self._call(call.index, call.id, call.function.name if call.function else None,
                                         call.function.arguments if call.function else None))
            if choice.finish_reason is not None:
                self.finish_reason = choice.finish_reason
        return events

    def _text(self, text: str, token_logprobs: list[dict[str, Any]]) -> list[Event]:
        events = []
        if self._message is None:
            self._message = len(self.output)
            item = message_item(new_id("msg_"), "", "in_progress", [])
            item["content"] = []
            self.output.append(item)
            events.append(self.seq.event("response.output_item.added", output_index=self._message,
                                         item=copy.deepcopy(item)))
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            item["content"].append(part)
            events.append(self.seq.event("response.content_part.added", item_id=item["id"],
                                         output_index=self._message, content_index=0, part=dict(part)))
        item = self.output[self._message]
        part = item["content"][0]
        part["text"] += text
        part["logprobs"].extend(token_logprobs)
        events.append(self.seq.event("response.output_text.delta", item_id=item["id"], output_index=self._message,
                                     content_index=0, delta=text, logprobs=token_logprobs))
        return events

    def _call(self, index: int, call_id: str | None, name: str | None, arguments: str | None) -> list[Event]:
        events = []
        if index not in self._calls:
            self._calls[index] = len(self.output)
            item = function_call_item(new_id("fc_"), call_id or new_id("call_"), name or "", "", "in_progress")
            self.output.append(item)
            events.append(self.seq.event("response.output_item.added", output_index=self._calls[index],
                                         item=dict(item)))
        output_index = self._calls[index]
        item = self.output[output_index]
        if name and not item["name"]:
            item["name"] = name
        if arguments:
            item["arguments"] += arguments
            events.append(self.seq.event("response.function_call_arguments.delta", item_id=item["id"],
                                         output_index=output_index, delta=arguments))
        return events

    def finish(self) -> list[Event]:
        """Close every open item with its final shape."""
        status = "incomplete" if self.finish_reason == "length" else "completed"
        events: list[Event] = []
        for output_index, item in enumerate(self.output):
            item["status"] = status
            events.extend(_closing(self.seq, output_index, item))
        return events


def _closing(seq: Sequencer, output_index: int, item: Item) -> list[Event]:
    """The events that end an item whose content has been sent."""
    events = []
    if item["type"] == "message":
        for content_index, part in enumerate(item["content"]):
            if part["type"] == "output_text":
                events.append(seq.event("response.output_text.done", item_id=item["id"], output_index=output_index,
                                        content_index=content_index, text=part["text"], logprobs=part["logprobs"]))
            events.append(seq.event("response.content_part.done", item_id=item["id"], output_index=output_index,
                                    content_index=content_index, part=dict(part)))
    elif item["type"] == "function_call":
        events.append(seq.event("response.function_call_arguments.done", item_id=item["id"],
                                output_index=output_index, name=item["name"], arguments=item["arguments"]))
    events.append(seq.event("response.output_item.done", output_index=output_index, item=copy.deepcopy(item)))
    return events


def replay(response: dict[str, Any], *, final: bool) -> list[Event]:
    """A stored response told as a stream: created, its items with their content, and its end.

    ``final`` says whether the response has ended; one still queued or in
    progress is told up to where it stands.
    """
    seq = Sequencer()
    start = {**response, "output": [], "completed_at": None, "error": None, "incomplete_details": None}
    start.pop("usage", None)
    if response["status"] == "queued":
        return [lifecycle(seq, "response.created", start), lifecycle(seq, "response.queued", start)]
    start["status"] = "in_progress"
    events = [lifecycle(seq, "response.created", start), lifecycle(seq, "response.in_progress", start)]
    if not final:
        return events
    for output_index, item in enumerate(response["output"]):
        events.extend(_told(seq, output_index, item))
    end = {"completed": "response.completed", "incomplete": "response.incomplete",
           "failed": "response.failed", "cancelled": "response.cancelled"}.get(response["status"])
    if end == "response.cancelled":
        # The spec has no cancelled event: a cancelled response's stream ends with its last item.
        return events
    if end is not None:
        events.append(lifecycle(seq, end, response))
    return events


def _announced(item: Item) -> Item:
    """An item as it stands when announced: in progress, nothing in it yet."""
    if item["type"] == "message":
        return {**item, "status": "in_progress", "content": []}
    if item["type"] == "function_call":
        return {**item, "status": "in_progress", "arguments": ""}
    return dict(item)


def _told(seq: Sequencer, output_index: int, item: Item) -> list[Event]:
    events = [seq.event("response.output_item.added", output_index=output_index, item=_announced(item))]
    if item["type"] == "message":
        for content_index, part in enumerate(item["content"]):
            blank = {**part, "text": "", "logprobs": []} if part["type"] == "output_text" else part
            events.append(seq.event("response.content_part.added", item_id=item["id"], output_index=output_index,
                                    content_index=content_index, part=blank))
            if part["type"] == "output_text" and part["text"]:
                events.append(seq.event("response.output_text.delta", item_id=item["id"], output_index=output_index,
                                        content_index=content_index, delta=part["text"], logprobs=part["logprobs"]))
    elif item["type"] == "function_call" and item["arguments"]:
        events.append(seq.event("response.function_call_arguments.delta", item_id=item["id"],
                                output_index=output_index, delta=item["arguments"]))
    return events + _closing(seq, output_index, item)
