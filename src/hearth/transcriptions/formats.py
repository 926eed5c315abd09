"""Render Whisper segments as OpenAI's transcription response formats.

Pure functions over the engine's dataclasses: `text`, `srt`, `vtt` as strings;
`json`, `verbose_json` and the `transcript.text.*` stream events as dicts
shaped exactly like the OpenAI spec's schemas.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from hearth.engines.whisper import Segment, TokenLogprob, TranscriptionInfo

# Translations are always into English, and verbose_json says so.
TRANSLATION_LANGUAGE = "english"


def delta_text(segment: Segment) -> str:
    """The text a segment adds to the transcript.

    Whisper starts each segment with the space that separates it from the
    previous one; the transcript's first segment drops it.
    """
    return segment.text.lstrip() if segment.id == 0 else segment.text


def transcript_text(segments: Iterable[Segment]) -> str:
    """The whole transcript: exactly the concatenation of the stream's deltas."""
    return "".join(delta_text(segment) for segment in segments)


def render_text(segments: Iterable[Segment]) -> str:
    return transcript_text(segments) + "\n"


def render_srt(segments: Iterable[Segment]) -> str:
    cues = (
        f"{number}\n{_timestamp(s.start, ',')} --> {_timestamp(s.end, ',')}\n{s.text.strip()}\n"
        for number, s in enumerate(segments, start=1)
    )
    return "\n".join(cues)


def render_vtt(segments: Iterable[Segment]) -> str:
    cues = (
        f"{_timestamp(s.start, '.')} --> {_timestamp(s.end, '.')}\n{s.text.strip()}\n"
        for s in segments
    )
    return "WEBVTT\n\n" + "\n".join(cues)


def render_json(
    info: TranscriptionInfo, segments: Sequence[Segment], *, logprobs: bool = False
) -> dict[str, Any]:
    """CreateTranscriptionResponseJson, or CreateTranslationResponseJson for a translation."""
    body: dict[str, Any] = {"text": transcript_text(segments)}
    if info.task == "translate":
        return body
    if logprobs:
        body["logprobs"] = _logprobs(segments)
    body["usage"] = duration_usage(info)
    return body


def render_verbose_json(
    info: TranscriptionInfo,
    segments: Sequence[Segment],
    *,
    include_segments: bool = True,
    include_words: bool = False,
) -> dict[str, Any]:
    """CreateTranscriptionResponseVerboseJson, or the translation variant.

    `include_segments` and `include_words` follow `timestamp_granularities[]`;
    words need segments transcribed with word timestamps.
    """
    translating = info.task == "translate"
    body: dict[str, Any] = {
        "task": info.task,
        "language": TRANSLATION_LANGUAGE if translating else info.language_name,
        "duration": info.duration,
        "text": transcript_text(segments),
    }
    if include_words and not translating:
        body["words"] = [
            {"word": word.word.strip(), "start": word.start, "end": word.end}
            for segment in segments
            for word in segment.words or ()
        ]
    if include_segments:
        body["segments"] = [_segment(segment) for segment in segments]
    if not translating:
        body["usage"] = duration_usage(info)
    return body


def text_delta_event(segment: Segment, *, logprobs: bool = False) -> dict[str, Any]:
    """A `transcript.text.delta` stream event for one decoded segment."""
    event: dict[str, Any] = {"type": "transcript.text.delta", "delta": delta_text(segment)}
    if logprobs:
        event["logprobs"] = _logprobs([segment])
    return event


def text_done_event(
    info: TranscriptionInfo, segments: Sequence[Segment], *, logprobs: bool = False
) -> dict[str, Any]:
    """The closing `transcript.text.done` stream event, with token usage."""
    event: dict[str, Any] = {"type": "transcript.text.done", "text": transcript_text(segments)}
    if logprobs:
        event["logprobs"] = _logprobs(segments)
    event["usage"] = token_usage(info, segments)
    return event


def duration_usage(info: TranscriptionInfo) -> dict[str, Any]:
    """TranscriptTextUsageDuration; OpenAI bills whole seconds, rounded up."""
    return {"type": "duration", "seconds": math.ceil(info.duration)}


def token_usage(info: TranscriptionInfo, segments: Sequence[Segment]) -> dict[str, Any]:
    """TranscriptTextUsageTokens: prompt and encoded-audio tokens in, decoded tokens out."""
    output_tokens = sum(len(segment.tokens) for segment in segments)
    input_tokens = info.prompt_tokens + info.audio_tokens
    return {
        "type": "tokens",
        "input_tokens": input_tokens,
        "input_token_details": {
            "text_tokens": info.prompt_tokens,
            "audio_tokens": info.audio_tokens,
        },
        "output_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
    }


def _segment(segment: Segment) -> dict[str, Any]:
    """TranscriptionSegment."""
    return {
        "id": segment.id,
        "seek": segment.seek,
        "start": segment.start,
        "end": segment.end,
        "text": segment.text,
        "tokens": list(segment.tokens),
        "temperature": segment.temperature,
        "avg_logprob": segment.avg_logprob,
        "compression_ratio": segment.compression_ratio,
        "no_speech_prob": segment.no_speech_prob,
    }


def _logprobs(segments: Iterable[Segment]) -> list[dict[str, Any]]:
    return [_logprob(entry) for segment in segments for entry in segment.logprobs or ()]


def _logprob(entry: TokenLogprob) -> dict[str, Any]:
    return {"token": entry.token, "logprob": entry.logprob, "bytes": list(entry.bytes)}


def _timestamp(seconds: float, decimal_marker: str) -> str:
    """HH:MM:SS,mmm for SRT (marker ',') and HH:MM:SS.mmm for WebVTT (marker '.')."""
    milliseconds = round(seconds * 1000)
    hours, milliseconds = divmod(milliseconds, 3_600_000)
    minutes, milliseconds = divmod(milliseconds, 60_000)
    whole_seconds, milliseconds = divmod(milliseconds, 1000)
    return f"{hours:02d}:{minutes:02d}:{whole_seconds:02d}{decimal_marker}{milliseconds:03d}"
