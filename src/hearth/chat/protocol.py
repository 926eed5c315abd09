"""Wire models for POST /v1/chat/completions (CreateChatCompletionRequest and its responses).

The request model declares every field of the spec, so a typo is refused as an
unrecognized argument while anything the SDK may send validates. Numbers and
booleans are strict: `"0.5"` is not a temperature. Nested objects ignore keys
this server has no use for (the spec keeps adding optional ones, such as
`prompt_cache_breakpoint` on content parts).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr

from hearth.wire import one_of

Temperature = Annotated[float, Field(strict=True, ge=0, le=2)]
TopP = Annotated[float, Field(strict=True, ge=0, le=1)]
Penalty = Annotated[float, Field(strict=True, ge=-2, le=2)]
Choices = Annotated[int, Field(strict=True, ge=1, le=128)]
Seed = Annotated[int, Field(strict=True, ge=-(2**63), le=2**63 - 1)]
# Token id (as a string key) to a bias between -100 and 100.
LogitBias = dict[StrictStr, Annotated[int, Field(strict=True, ge=-100, le=100)]]
Stop = Annotated[StrictStr | Annotated[list[StrictStr], Field(min_length=1, max_length=4)],
                 one_of("a string or an array of 1 to 4 strings")]
Metadata = Annotated[dict[Annotated[str, Field(max_length=64)], Annotated[StrictStr, Field(max_length=512)]],
                     Field(max_length=16)]
FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "function_call"]


class _Nested(BaseModel):
    model_config = ConfigDict(extra="ignore")


# -- content parts -----------------------------------------------------------


class TextPart(_Nested):
    type: Literal["text"]
    text: StrictStr


class RefusalPart(_Nested):
    type: Literal["refusal"]
    refusal: StrictStr


class ImageURL(_Nested):
    url: StrictStr
    detail: Literal["auto", "low", "high"] = "auto"


class ImagePart(_Nested):
    type: Literal["image_url"]
    image_url: ImageURL


class InputAudio(_Nested):
    data: StrictStr
    format: Literal["wav", "mp3"]


class AudioPart(_Nested):
    type: Literal["input_audio"]
    input_audio: InputAudio


class FileRef(_Nested):
    filename: StrictStr | None = None
    file_data: StrictStr | None = None
    file_id: StrictStr | None = None


class FilePart(_Nested):
    type: Literal["file"]
    file: FileRef


UserPart = Annotated[TextPart | ImagePart | AudioPart | FilePart, Field(discriminator="type")]
AssistantPart = Annotated[TextPart | RefusalPart, Field(discriminator="type")]
TextContent = StrictStr | Annotated[list[TextPart], Field(min_length=1)]


# -- messages ----------------------------------------------------------------


class FunctionCall(_Nested):
    name: StrictStr
    arguments: StrictStr


class ToolCall(_Nested):
    id: StrictStr
    type: Literal["function"] = "function"
    function: FunctionCall


class SystemMessage(_Nested):
    role: Literal["system"]
    content: TextContent
    name: StrictStr | None = None


class DeveloperMessage(_Nested):
    role: Literal["developer"]
    content: TextContent
    name: StrictStr | None = None


class UserMessage(_Nested):
    role: Literal["user"]
    content: StrictStr | Annotated[list[UserPart], Field(min_length=1)]
    name: StrictStr | None = None


class AssistantMessage(_Nested):
    role: Literal["assistant"]
    content: StrictStr | Annotated[list[AssistantPart], Field(min_length=1)] | None = None
    refusal: StrictStr | None = None
    name: StrictStr | None = None
    tool_calls: list[ToolCall] | None = None
    function_call: FunctionCall | None = None


class ToolMessage(_Nested):
    role: Literal["tool"]
    content: TextContent
    tool_call_id: StrictStr


class FunctionMessage(_Nested):
    role: Literal["function"]
    content: StrictStr | None
    name: StrictStr


Message = Annotated[
    SystemMessage | DeveloperMessage | UserMessage | AssistantMessage | ToolMessage | FunctionMessage,
    Field(discriminator="role"),
]


# -- tools and formats -------------------------------------------------------


class FunctionDefinition(_Nested):
    name: Annotated[str, Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")]
    description: StrictStr | None = None
    parameters: dict[str, Any] | None = None
    strict: StrictBool | None = None


class FunctionTool(_Nested):
    type: Literal["function"]
    function: FunctionDefinition


class CustomTool(_Nested):
    type: Literal["custom"]
    custom: dict[str, Any]


Tool = Annotated[FunctionTool | CustomTool, Field(discriminator="type")]


class NamedFunction(_Nested):
    name: StrictStr


class NamedToolChoice(_Nested):
    type: Literal["function"]
    function: NamedFunction


class CustomToolChoice(_Nested):
    type: Literal["custom"]
    custom: NamedFunction


class AllowedTools(_Nested):
    mode: Literal["auto", "required"]
    tools: list[dict[str, Any]]


class AllowedToolsChoice(_Nested):
    type: Literal["allowed_tools"]
    allowed_tools: AllowedTools


ToolChoice = (Literal["none", "auto", "required"]
              | Annotated[NamedToolChoice | CustomToolChoice | AllowedToolsChoice,
                          Field(discriminator="type")])


class TextFormat(_Nested):
    type: Literal["text"]


class JSONObjectFormat(_Nested):
    type: Literal["json_object"]


class JSONSchema(_Nested):
    name: Annotated[str, Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")]
    description: StrictStr | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: StrictBool | None = None


class JSONSchemaFormat(_Nested):
    type: Literal["json_schema"]
    json_schema: JSONSchema


ResponseFormat = Annotated[TextFormat | JSONObjectFormat | JSONSchemaFormat,
                           Field(discriminator="type")]


class StreamOptions(_Nested):
    include_usage: StrictBool | None = None
    include_obfuscation: StrictBool | None = None


class AudioOutput(_Nested):
    voice: StrictStr | dict[str, Any]
    format: Literal["wav", "aac", "mp3", "flac", "opus", "pcm16"]


class Prediction(_Nested):
    type: Literal["content"]
    content: TextContent


# -- the request ---------------------------------------------------------------


class CreateChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: StrictStr
    messages: Annotated[list[Message], Field(min_length=1)]
    temperature: Temperature | None = None
    top_p: TopP | None = None
    n: Choices | None = None
    stream: StrictBool | None = None
    stream_options: StreamOptions | None = None
    stop: Stop | None = None
    max_tokens: Annotated[int, Field(strict=True, ge=1)] | None = None
    max_completion_tokens: Annotated[int, Field(strict=True, ge=1)] | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    logit_bias: LogitBias | None = None
    logprobs: StrictBool | None = None
    top_logprobs: Annotated[int, Field(strict=True, ge=0, le=20)] | None = None
    seed: Seed | None = None
    response_format: ResponseFormat | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: StrictBool | None = None
    # Deprecated forms of tools and tool_choice, still sent by older clients.
    functions: Annotated[list[FunctionDefinition], Field(min_length=1, max_length=128)] | None = None
    function_call: Literal["none", "auto"] | NamedFunction | None = None
    # Accepted and not acted on: they tune services this server does not have
    # (storage for distillation, caching tiers, reasoning budgets, abuse tracking).
    user: StrictStr | None = None
    safety_identifier: Annotated[StrictStr, Field(max_length=64)] | None = None
    metadata: Metadata | None = None
    store: StrictBool | None = None
    service_tier: Literal["auto", "default", "flex", "scale", "priority", "fast"] | None = None
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"] | None = None
    verbosity: Literal["low", "medium", "high"] | None = None
    prediction: Prediction | None = None
    prompt_cache_key: StrictStr | None = None
    prompt_cache_retention: Literal["in_memory", "24h"] | None = None
    prompt_cache_options: dict[str, Any] | None = None
    # Validated here, refused by the service: this server cannot honour them.
    modalities: list[Literal["text", "audio"]] | None = None
    audio: AudioOutput | None = None
    web_search_options: dict[str, Any] | None = None
    moderation: dict[str, Any] | None = None


# -- responses -------------------------------------------------------------------
# Fields the spec requires but allows to be null have no default, so they are
# always serialized; optional fields are left out of the body when unset.


def omitted_when_none() -> Any:
    return Field(default=None, exclude_if=lambda value: value is None)


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChoiceLogprobs(BaseModel):
    content: list[TokenLogprob] | None
    refusal: list[TokenLogprob] | None


class ResponseToolCall(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ResponseMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    refusal: str | None
    tool_calls: list[ResponseToolCall] | None = omitted_when_none()
    function_call: FunctionCall | None = omitted_when_none()


class ChatChoice(BaseModel):
    index: int
    message: ResponseMessage
    logprobs: ChoiceLogprobs | None
    finish_reason: FinishReason


class CompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    system_fingerprint: str
    choices: list[ChatChoice]
    usage: CompletionUsage
    service_tier: str | None = omitted_when_none()


class FunctionCallDelta(BaseModel):
    name: str | None = omitted_when_none()
    arguments: str | None = omitted_when_none()


class ToolCallDelta(BaseModel):
    index: int
    id: str | None = omitted_when_none()
    type: Literal["function"] | None = omitted_when_none()
    function: FunctionCallDelta | None = omitted_when_none()


class Delta(BaseModel):
    role: Literal["assistant"] | None = omitted_when_none()
    content: str | None = omitted_when_none()
    refusal: str | None = omitted_when_none()
    tool_calls: list[ToolCallDelta] | None = omitted_when_none()
    function_call: FunctionCallDelta | None = omitted_when_none()


class ChunkChoice(BaseModel):
    index: int
    delta: Delta
    logprobs: ChoiceLogprobs | None = omitted_when_none()
    finish_reason: FinishReason | None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    system_fingerprint: str
    choices: list[ChunkChoice]
    usage: CompletionUsage | None = omitted_when_none()
    service_tier: str | None = omitted_when_none()
