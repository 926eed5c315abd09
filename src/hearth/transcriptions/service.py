"""Speech to text: from an uploaded form to a transcript, whole or streamed.

The upload is spooled to an unnamed temporary file as it arrives (capped at
the API's 25 MiB), so it is never held in memory. Everything that can be
refused (form fields, model, option combinations, then the audio itself and
the language) is checked before the response starts, so errors are a JSON
envelope, never a cut-off stream. Decoding and inference run on the model's
runner, segment by segment: requests sharing the model take turns, and a
client that goes away stops the work at the next segment. The audio is decoded
as the engine consumes it, a window at a time, so an hour of it never sits in
memory decoded; the transcription owns the spooled file and closes it when done.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, BinaryIO, TypeVar, cast

import anyio.to_thread
from pydantic import ValidationError

from hearth import metrics
from hearth.accounting.meter import Meter, UsageEvent
from hearth.audio.decode import AudioDecodeError, iter_audio_chunks
from hearth.caller import Caller
from hearth.engines.registry import LoadedModel
from hearth.engines.runner import Admission, Lane
from hearth.engines.whisper import (
    AUTO_VAD,
    Segment,
    TranscriptionInfo,
    TranscriptionOptions,
    UnsupportedLanguageError,
    UnsupportedTaskError,
    VadParams,
    WhisperEngine,
    WhisperOptionError,
)
from hearth.errors import InvalidRequest, PayloadTooLarge, invalid_request
from hearth.files.blobio import batched, capped
from hearth.forms import IncomingForm
from hearth.models.service import ModelService
from hearth.transcriptions import formats
from hearth.transcriptions.protocol import (
    AudioForm,
    CreateTranscriptionForm,
    CreateTranslationForm,
    VadConfig,
    form_values,
)

Form = TypeVar("Form", bound=AudioForm)

# Fields of the spec that need models Hearth does not have.
UNSUPPORTED_FIELDS = {
    "languages": "`languages` needs gpt-transcribe's multi-language detection",
    "keywords": "`keywords` needs gpt-transcribe's keyword biasing; use `prompt`",
    "known_speaker_names": "speaker names need a diarization model",
    "known_speaker_references": "speaker references need a diarization model",
}
# Stream events carry plain text, so only the text-like formats can stream.
STREAMABLE_FORMATS = frozenset({"json", "text"})


@dataclass
class Upload:
    """A received form: the audio, spooled to disk, and its text fields in order."""

    file: BinaryIO
    items: list[tuple[str, str]]


@dataclass(frozen=True)
class Job:
    """A request that has passed every check that needs no audio."""

    model_name: str
    options: TranscriptionOptions
    response_format: str
    stream: bool = False
    include_segments: bool = True
    include_words: bool = False


@dataclass
class Running:
    """A transcription whose first audio decoded and whose segments are still to come."""

    job: Job
    caller: Caller
    background: bool
    info: TranscriptionInfo  # the durations are final once `items` is exhausted
    items: AsyncGenerator[TranscriptionInfo | Segment, None]
    done: list[Segment] = field(default_factory=list)


# Receiving the form


async def receive_upload(form: IncomingForm, limit: int) -> Upload:
    part = await form.next_file()
    if part is None:
        raise InvalidRequest("Missing required parameter: 'file'.", param="file")
    if part.name != "file":
        raise InvalidRequest(f"Unexpected file field '{part.name}'; the audio goes in 'file'.",
                             param=part.name)
    spool = await _spool(part.chunks, limit)
    try:
        await form.finish()
    except BaseException:
        spool.close()
        raise
    return Upload(spool, form.items)


async def _spool(chunks: AsyncIterator[bytes], limit: int) -> BinaryIO:
    # Handed to the caller open; it closes the file once the audio is decoded.
    spool = cast(BinaryIO, tempfile.TemporaryFile())  # noqa: SIM115
    try:
        async for block in batched(capped(chunks, limit, lambda: _too_large(limit))):
            await anyio.to_thread.run_sync(spool.writelines, block)
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    return spool


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The audio file is too large: the limit is {limit} bytes "
                           f"({limit // (1024 * 1024)} MiB).", param="file",
                           code="file_too_large")


def parse_form(form: type[Form], items: Iterable[tuple[str, str]]) -> Form:
    try:
        return form.model_validate(form_values(form, items))
    except ValidationError as exc:
        raise invalid_request(exc.errors()) from None


# Planning


def plan_transcription(form: CreateTranscriptionForm) -> Job:
    _refuse_unsupported(form)
    granularities = set(form.timestamp_granularities or ())
    if form.timestamp_granularities is not None and form.response_format != "verbose_json":
        raise InvalidRequest("timestamp_granularities is only supported with response_format "
                             "`verbose_json`.", param="timestamp_granularities")
    logprobs = "logprobs" in form.include
    if logprobs and form.response_format != "json":
        raise InvalidRequest("include[]=logprobs is only supported with response_format "
                             "`json`.", param="include")
    if form.stream and form.response_format not in STREAMABLE_FORMATS:
        raise InvalidRequest(f"Streaming is not supported with response_format "
                             f"`{form.response_format}`; use `json` or `text`.", param="stream")
    options = TranscriptionOptions(
        task="transcribe", language=form.language, prompt=form.prompt,
        temperature=form.temperature, word_timestamps="word" in granularities,
        vad=_vad(form.chunking_strategy), logprobs=logprobs)
    return Job(form.model, options, form.response_format, stream=bool(form.stream),
               include_segments=not granularities or "segment" in granularities,
               include_words="word" in granularities)


def plan_translation(form: CreateTranslationForm) -> Job:
    options = TranscriptionOptions(task="translate", prompt=form.prompt,
                                   temperature=form.temperature)
    return Job(form.model, options, form.response_format)


def _refuse_unsupported(form: CreateTranscriptionForm) -> None:
    if form.response_format == "diarized_json":
        raise InvalidRequest("response_format `diarized_json` needs a diarization model, and "
                             "none is installed; use `verbose_json` for timed segments.",
                             param="response_format")
    for name, reason in UNSUPPORTED_FIELDS.items():
        if getattr(form, name) is not None:
            raise InvalidRequest(f"`{name}` is not supported by Whisper models: {reason}.",
                                 param=name)


def _vad(strategy: str | VadConfig | None) -> VadParams | None:
    if strategy is None:
        return None
    if isinstance(strategy, str):  # "auto", the only string the form accepts
        return AUTO_VAD
    return VadParams(threshold=strategy.threshold, prefix_padding_ms=strategy.prefix_padding_ms,
                     silence_duration_ms=strategy.silence_duration_ms)


# Running


def _transcribe(engine: WhisperEngine, audio_file: BinaryIO,
                options: TranscriptionOptions) -> Iterator[TranscriptionInfo | Segment]:
    """Runs on the model's thread: the info, the segments as they decode, the final info.

    The audio is decoded as the engine asks for it; the file closes with the
    generator, finished or abandoned.
    """
    with audio_file:
        transcription = engine.transcribe_stream(iter_audio_chunks(audio_file), options)
        yield transcription.info
        yield from transcription.segments
        yield transcription.info  # its durations now count every window


async def _segments(running: Running) -> AsyncGenerator[Segment, None]:
    """The segments as they decode, kept in `done`; an info updates the totals."""
    async with aclosing(running.items) as items:
        async for item in items:
            if isinstance(item, TranscriptionInfo):
                running.info = item
            else:
                running.done.append(item)
                yield item


class TranscriptionService:
    """Speech to text for any caller: transcription in the spoken language, or into English."""

    def __init__(self, models: ModelService, meter: Meter, max_upload_bytes: int) -> None:
        self.models = models
        self.meter = meter
        self.max_upload_bytes = max_upload_bytes

    async def receive(self, form: IncomingForm) -> Upload:
        """The audio spooled to disk, and the form's text fields."""
        return await receive_upload(form, self.max_upload_bytes)

    async def start(self, caller: Caller, job: Job, audio_file: BinaryIO, *,
                    background: bool = False) -> Running:
        """Decode the first audio and begin; refusals of the model or the audio are raised here.

        Once this returns, the transcription owns `audio_file` and closes it,
        and holds its place at the model until its segments are done.
        """
        model = await self.models.load(job.model_name, "transcription")
        admission = await self.models.admit(model, background=background)
        items = self._metered(caller, job, model, admission, audio_file)
        try:
            info = await anext(items)
        except AudioDecodeError as exc:
            raise InvalidRequest(str(exc), param="file") from None
        except UnsupportedLanguageError as exc:
            raise InvalidRequest(str(exc), param="language") from None
        except UnsupportedTaskError as exc:
            raise InvalidRequest(str(exc), param="model") from None
        except WhisperOptionError as exc:
            raise InvalidRequest(str(exc)) from None
        return Running(job, caller, background, cast(TranscriptionInfo, info), items)

    async def _metered(self, caller: Caller, job: Job, model: LoadedModel, admission: Admission,
                       audio_file: BinaryIO) -> AsyncGenerator[TranscriptionInfo | Segment, None]:
        """The engine's items; the audio heard is recorded when they end, however they end."""
        items = model.runner.stream(lambda: _transcribe(model.engine, audio_file, job.options),
                                    admission=admission)
        info: TranscriptionInfo | None = None
        output_tokens = 0
        started = time.perf_counter()
        try:
            async with aclosing(items):
                async for item in items:
                    if isinstance(item, TranscriptionInfo):
                        info = item
                    else:
                        output_tokens += len(item.tokens)
                    yield item
            if info is not None:  # heard to the end: the whole duration took this long
                metrics.record_real_time_factor(model.spec.id, "transcription",
                                                time.perf_counter() - started, info.duration)
        finally:
            admission.release()  # already released if the engine's stream began
            if info is not None:
                self.meter.record(UsageEvent(
                    caller, kind="audio_transcriptions", endpoint=_endpoint(job),
                    model=job.model_name, batch=admission.lane is Lane.background,
                    seconds=info.duration, input_tokens=info.prompt_tokens + info.audio_tokens,
                    input_audio_tokens=info.audio_tokens, output_tokens=output_tokens))

    async def finish(self, running: Running, disconnected: Callable[[], Awaitable[bool]]) -> bool:
        """Decode every segment; False if the client left first (the work stops there)."""
        async with aclosing(_segments(running)) as segments:
            try:
                async for _ in segments:
                    if await disconnected():
                        return False
            except AudioDecodeError as exc:  # damage past the first window
                raise InvalidRequest(str(exc), param="file") from None
        return True

    @staticmethod
    def render(running: Running) -> dict[str, Any] | str:
        """The finished transcript in the requested response format."""
        info, segments, job = running.info, running.done, running.job
        match job.response_format:
            case "json":
                return formats.render_json(info, segments, logprobs=job.options.logprobs)
            case "verbose_json":
                return formats.render_verbose_json(info, segments,
                                                   include_segments=job.include_segments,
                                                   include_words=job.include_words)
            case "text":
                return formats.render_text(segments)
            case "srt":
                return formats.render_srt(segments)
            case _:
                return formats.render_vtt(segments)

    @staticmethod
    async def events(running: Running) -> AsyncIterator[dict[str, Any]]:
        """`transcript.text.delta` per decoded segment, then `transcript.text.done`."""
        logprobs = running.job.options.logprobs
        async with aclosing(_segments(running)) as segments:
            try:
                async for segment in segments:
                    yield formats.text_delta_event(segment, logprobs=logprobs)
            except AudioDecodeError as exc:  # damage past the first window: sent as an error event
                raise InvalidRequest(str(exc), param="file") from None
        yield formats.text_done_event(running.info, running.done, logprobs=logprobs)


def _endpoint(job: Job) -> str:
    return f"/v1/audio/{'translations' if job.options.task == 'translate' else 'transcriptions'}"
