"""Wire models for the Responses API (POST /v1/responses and its siblings) and Conversations.

The create request declares every top-level field of the spec, so a typo is
refused as an unrecognized argument. Input items and tools stay loose here
(``dict``): ``translate.py`` reads them by their ``type``, so an item or tool
this server cannot act on is refused by name rather than as a type error.

What is sent back is built as plain dicts in the spec's shapes (output items
are stored and replayed as they were sent); ``Response`` types the object
itself so the route's schema and the SDK's parser agree.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StrictBool,
    StrictStr,
    model_serializer,
)

from hearth.chat.protocol import Metadata, Temperature, TopP

ResponseStatus = Literal["completed", "failed", "in_progress", "cancelled", "queued", "incomplete"]
# Where a response ends; nothing moves it on from these.
FINAL_STATUSES: tuple[ResponseStatus, ...] = ("completed", "failed", "cancelled", "incomplete")


class _Nested(BaseModel):
    model_config = ConfigDict(extra="ignore")


class TextFormatText(_Nested):
    type: Literal["text"]


class TextFormatJSONObject(_Nested):
    type: Literal["json_object"]


class TextFormatJSONSchema(_Nested):
    type: Literal["json_schema"]
    name: Annotated[str, Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")]
    schema_: dict[str, Any] = Field(alias="schema")
    description: StrictStr | None = None
    strict: StrictBool | None = None


TextFormat = Annotated[TextFormatText | TextFormatJSONObject | TextFormatJSONSchema,
                       Field(discriminator="type")]


class TextParam(_Nested):
    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class ConversationRef(_Nested):
    id: StrictStr


class CreateResponseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: StrictStr | None = None
    input: StrictStr | list[dict[str, Any]] | None = None
    instructions: StrictStr | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    max_output_tokens: Annotated[int, Field(strict=True, ge=16)] | None = None
    top_logprobs: Annotated[int, Field(strict=True, ge=0, le=20)] | None = None
    text: TextParam | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: StrictStr | dict[str, Any] | None = None
    parallel_tool_calls: StrictBool | None = None
    max_tool_calls: Annotated[int, Field(strict=True, ge=1)] | None = None
    previous_response_id: StrictStr | None = None
    conversation: StrictStr | ConversationRef | None = None
    store: StrictBool | None = None
    background: StrictBool | None = None
    stream: StrictBool | None = None
    stream_options: dict[str, Any] | None = None
    metadata: Metadata | None = None
    truncation: Literal["auto", "disabled"] | None = None
    include: list[StrictStr] | None = None
    # Accepted and echoed, not acted on: this server's models do not reason, and it has no
    # caching tiers or abuse tracking to tune.
    reasoning: dict[str, Any] | None = None
    user: StrictStr | None = None
    safety_identifier: Annotated[StrictStr, Field(max_length=64)] | None = None
    prompt_cache_key: StrictStr | None = None
    prompt_cache_retention: Literal["in_memory", "24h"] | None = None
    prompt_cache_options: dict[str, Any] | None = None
    service_tier: Literal["auto", "default", "flex", "scale", "priority", "fast", "ultrafast"] | None = None
    # Validated here, refused by the service: this server has nothing to honour them with.
    prompt: dict[str, Any] | None = None
    context_management: list[dict[str, Any]] | None = None
    moderation: dict[str, Any] | None = None


class Response(BaseModel):
    """The response object; ``output`` items are the spec's shapes, as stored."""

    id: str
    object: Literal["response"] = "response"
    created_at: int
    status: ResponseStatus
    completed_at: int | None = None
    background: bool = False
    error: dict[str, Any] | None = None
    incomplete_details: dict[str, Any] | None = None
    instructions: str | None = None
    max_output_tokens: int | None = None
    max_tool_calls: int | None = None
    model: str
    output: list[dict[str, Any]] = []
    parallel_tool_calls: bool = True
    previous_response_id: str | None = None
    conversation: dict[str, Any] | None = None
    reasoning: dict[str, Any] | None = None
    service_tier: str = "default"
    store: bool = True
    temperature: float | None = None
    text: dict[str, Any]
    tool_choice: str | dict[str, Any] = "auto"
    tools: list[dict[str, Any]] = []
    top_logprobs: int = 0
    top_p: float | None = None
    truncation: str = "disabled"
    usage: dict[str, Any] | None = None
    user: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    metadata: dict[str, str] = {}

    @model_serializer(mode="wrap")
    def _omit_unset_optionals(self, handler: SerializerFunctionWrapHandler) -> dict:
        # The spec types these as plain string/object: absent when unset, never null.
        data = handler(self)
        return {key: value for key, value in data.items() if value is not None or key not in _ABSENT_WHEN_NONE}


_ABSENT_WHEN_NONE = {"usage", "user", "safety_identifier", "prompt_cache_key", "max_tool_calls", "conversation"}


class DeletedResponse(BaseModel):
    id: str
    object: Literal["response"] = "response"
    deleted: bool = True


class ItemList(BaseModel):
    """A page of items (``ResponseItemList``, ``ConversationItemList``)."""

    object: Literal["list"] = "list"
    data: list[dict[str, Any]]
    first_id: str | None
    last_id: str | None
    has_more: bool

    @classmethod
    def of(cls, items: list[dict[str, Any]], has_more: bool) -> ItemList:
        return cls(data=items, first_id=items[0]["id"] if items else None,
                   last_id=items[-1]["id"] if items else None, has_more=has_more)


# -- conversations ----------------------------------------------------------------------


class CreateConversationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: Annotated[list[dict[str, Any]], Field(max_length=20)] | None = None
    metadata: Metadata | None = None


class UpdateConversationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metadata: Metadata | None


class AddItemsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: Annotated[list[dict[str, Any]], Field(min_length=1, max_length=20)]


class ConversationObject(BaseModel):
    id: str
    object: Literal["conversation"] = "conversation"
    created_at: int
    metadata: dict[str, str] = {}


class DeletedConversation(BaseModel):
    id: str
    object: Literal["conversation.deleted"] = "conversation.deleted"
    deleted: bool = True
