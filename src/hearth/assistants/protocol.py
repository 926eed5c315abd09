"""Wire models for the Assistants API: the requests of v1 and v2 in one superset each.

A request is validated against the fields either version knows; the service
then refuses, by name, a field the caller's version does not have (``file_ids``
is v1's, ``tool_resources`` and ``attachments`` are v2's). Objects are rendered
per version by ``objects.py``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr

from hearth.chat.protocol import FunctionDefinition, Metadata, Temperature, TopP

Version = Literal["v1", "v2"]


class _Nested(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- tools -------------------------------------------------------------------------------


class FunctionTool(_Nested):
    type: Literal["function"]
    function: FunctionDefinition


class CodeInterpreterTool(_Nested):
    type: Literal["code_interpreter"]


class FileSearchTool(_Nested):
    type: Literal["file_search"]
    file_search: dict[str, Any] | None = None


class RetrievalTool(_Nested):
    type: Literal["retrieval"]


Tool = Annotated[FunctionTool | CodeInterpreterTool | FileSearchTool | RetrievalTool,
                 Field(discriminator="type")]


class NamedFunction(_Nested):
    name: StrictStr


class NamedToolChoice(_Nested):
    type: Literal["function", "code_interpreter", "file_search", "retrieval"]
    function: NamedFunction | None = None


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class JSONSchema(_Nested):
    name: Annotated[str, Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")]
    description: StrictStr | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: StrictBool | None = None


class ResponseFormatObject(_Nested):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchema | None = None


ResponseFormat = Literal["auto", "none"] | ResponseFormatObject


# -- messages ------------------------------------------------------------------------------


class TextPart(_Nested):
    type: Literal["text"]
    text: Annotated[StrictStr, Field(max_length=256_000)]


class ImageFile(_Nested):
    file_id: StrictStr
    detail: Literal["auto", "low", "high"] | None = None


class ImageFilePart(_Nested):
    type: Literal["image_file"]
    image_file: ImageFile


class ImageURL(_Nested):
    url: StrictStr
    detail: Literal["auto", "low", "high"] | None = None


class ImageURLPart(_Nested):
    type: Literal["image_url"]
    image_url: ImageURL


ContentPart = Annotated[TextPart | ImageFilePart | ImageURLPart, Field(discriminator="type")]


class Attachment(_Nested):
    file_id: StrictStr
    tools: list[dict[str, Any]] = []


class CreateMessageRequest(_Request):
    role: Literal["user", "assistant"]
    content: Annotated[StrictStr, Field(max_length=256_000)] | Annotated[list[ContentPart], Field(min_length=1)]
    attachments: list[Attachment] | None = None
    file_ids: Annotated[list[StrictStr], Field(max_length=10)] | None = None
    metadata: Metadata | None = None


class ModifyMetadataRequest(_Request):
    """Modify message, modify run: only metadata changes."""

    metadata: Metadata | None = None


# -- assistants ----------------------------------------------------------------------------

Name = Annotated[StrictStr, Field(max_length=256)]
Description = Annotated[StrictStr, Field(max_length=512)]
Instructions = Annotated[StrictStr, Field(max_length=256_000)]


class CreateAssistantRequest(_Request):
    model: StrictStr
    name: Name | None = None
    description: Description | None = None
    instructions: Instructions | None = None
    tools: Annotated[list[Tool], Field(max_length=128)] | None = None
    tool_resources: dict[str, Any] | None = None
    file_ids: Annotated[list[StrictStr], Field(max_length=20)] | None = None
    metadata: Metadata | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    response_format: ResponseFormat | None = None
    # Accepted for reasoning models, which this server does not have; not acted on.
    reasoning_effort: Literal["minimal", "low", "medium", "high"] | None = None


class ModifyAssistantRequest(CreateAssistantRequest):
    model: StrictStr | None = None  # type: ignore[assignment]


class CreateAssistantFileRequest(_Request):
    file_id: StrictStr


# -- threads -------------------------------------------------------------------------------


class CreateThreadRequest(_Request):
    messages: list[CreateMessageRequest] | None = None
    tool_resources: dict[str, Any] | None = None
    metadata: Metadata | None = None


class ModifyThreadRequest(_Request):
    tool_resources: dict[str, Any] | None = None
    metadata: Metadata | None = None


# -- runs ----------------------------------------------------------------------------------


class TruncationStrategy(_Nested):
    type: Literal["auto", "last_messages"]
    last_messages: Annotated[int, Field(strict=True, ge=1)] | None = None


TokenLimit = Annotated[int, Field(strict=True, ge=256)]


class _RunOptions(_Request):
    assistant_id: StrictStr
    model: StrictStr | None = None
    instructions: StrictStr | None = None
    tools: Annotated[list[Tool], Field(max_length=20)] | None = None
    metadata: Metadata | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    stream: StrictBool | None = None
    max_prompt_tokens: TokenLimit | None = None
    max_completion_tokens: TokenLimit | None = None
    truncation_strategy: TruncationStrategy | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: StrictBool | None = None
    response_format: ResponseFormat | None = None
    reasoning_effort: Literal["minimal", "low", "medium", "high"] | None = None


class CreateRunRequest(_RunOptions):
    additional_instructions: StrictStr | None = None
    additional_messages: list[CreateMessageRequest] | None = None


class CreateThreadAndRunRequest(_RunOptions):
    thread: CreateThreadRequest | None = None
    tool_resources: dict[str, Any] | None = None


class ToolOutput(_Nested):
    tool_call_id: StrictStr | None = None
    output: StrictStr | None = None


class SubmitToolOutputsRequest(_Request):
    tool_outputs: list[ToolOutput]
    stream: StrictBool | None = None
