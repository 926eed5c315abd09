"""Response formats over segments: exact SRT/WebVTT text and spec-shaped JSON."""

from __future__ import annotations

import srt
import webvtt

from hearth.engines.whisper import Segment, TokenLogprob, TranscriptionInfo, Word
from hearth.transcriptions.formats import (
    render_json,
    render_srt,
    render_text,
    render_verbose_json,
    render_vtt,
    text_delta_event,
    text_done_event,
    transcript_text,
)


def segment(index: int, start: float, end: float, text: str, *words: Word) -> Segment:
    return Segment(
        id=index,
        seek=0,
        start=start,
        end=end,
        text=text,
        tokens=(50364, 440, 50414),
        temperature=0.0,
        avg_logprob=-0.25,
        compression_ratio=1.2,
        no_speech_prob=0.01,
        words=words or None,
        logprobs=(TokenLogprob(text.split()[0], -0.5, tuple(text.split()[0].encode())),),
    )


SEGMENTS = [
    segment(
        0, 0.0, 1.0, " Hello there.", Word(" Hello", 0.0, 0.4, 0.9), Word(" there.", 0.4, 1.0, 0.8)
    ),
    segment(
        1,
        1.5,
        3723.25,
        " Goodbye, world.",
        Word(" Goodbye,", 1.5, 2.0, 0.9),
        Word(" world.", 2.0, 3723.25, 0.7),
    ),
]


def info(task: str = "transcribe") -> TranscriptionInfo:
    return TranscriptionInfo(
        task=task,
        language="en",
        language_probability=0.99,
        duration=3724.1,
        duration_after_vad=3724.1,
        prompt_tokens=3,
    )


def test_srt_is_exact_and_parses_back():
    rendered = render_srt(SEGMENTS)

    assert rendered == (
        "1\n00:00:00,000 --> 00:00:01,000\nHello there.\n\n"
        "2\n00:00:01,500 --> 01:02:03,250\nGoodbye, world.\n"
    )
    cues = list(srt.parse(rendered))
    assert [cue.content for cue in cues] == ["Hello there.", "Goodbye, world."]
    assert cues[1].end.total_seconds() == 3723.25


def test_vtt_is_exact_and_parses_back():
    rendered = render_vtt(SEGMENTS)

    assert rendered == (
        "WEBVTT\n\n"
        "00:00:00.000 --> 00:00:01.000\nHello there.\n\n"
        "00:00:01.500 --> 01:02:03.250\nGoodbye, world.\n"
    )
    captions = webvtt.from_string(rendered).captions
    assert [(c.start, c.end, c.text) for c in captions] == [
        ("00:00:00.000", "00:00:01.000", "Hello there."),
        ("00:00:01.500", "01:02:03.250", "Goodbye, world."),
    ]


def test_text_drops_only_the_leading_space():
    assert transcript_text(SEGMENTS) == "Hello there. Goodbye, world."
    assert render_text(SEGMENTS) == "Hello there. Goodbye, world.\n"


def test_json_has_text_usage_and_optional_logprobs():
    assert render_json(info(), SEGMENTS) == {
        "text": "Hello there. Goodbye, world.",
        "usage": {"type": "duration", "seconds": 3725},
    }
    with_logprobs = render_json(info(), SEGMENTS, logprobs=True)
    assert with_logprobs["logprobs"] == [
        {"token": "Hello", "logprob": -0.5, "bytes": list(b"Hello")},
        {"token": "Goodbye,", "logprob": -0.5, "bytes": list(b"Goodbye,")},
    ]


def test_translation_json_is_text_only():
    assert render_json(info("translate"), SEGMENTS) == {"text": "Hello there. Goodbye, world."}


def test_verbose_json_matches_the_spec_shape():
    body = render_verbose_json(info(), SEGMENTS, include_words=True)

    assert list(body) == ["task", "language", "duration", "text", "words", "segments", "usage"]
    assert body["task"] == "transcribe"
    assert body["language"] == "english"
    assert body["duration"] == 3724.1
    assert body["words"][1] == {"word": "there.", "start": 0.4, "end": 1.0}
    assert body["segments"][0] == {
        "id": 0,
        "seek": 0,
        "start": 0.0,
        "end": 1.0,
        "text": " Hello there.",
        "tokens": [50364, 440, 50414],
        "temperature": 0.0,
        "avg_logprob": -0.25,
        "compression_ratio": 1.2,
        "no_speech_prob": 0.01,
    }
    assert body["usage"] == {"type": "duration", "seconds": 3725}


def test_verbose_json_follows_timestamp_granularities():
    words_only = render_verbose_json(info(), SEGMENTS, include_segments=False, include_words=True)
    assert "segments" not in words_only and len(words_only["words"]) == 4

    segments_only = render_verbose_json(info(), SEGMENTS)
    assert "words" not in segments_only and len(segments_only["segments"]) == 2


def test_translation_verbose_json_reports_english_and_no_usage():
    body = render_verbose_json(info("translate"), SEGMENTS, include_words=True)

    assert body["task"] == "translate"
    assert body["language"] == "english"
    assert "usage" not in body and "words" not in body


def test_stream_deltas_concatenate_to_the_done_text():
    deltas = [text_delta_event(s, logprobs=True) for s in SEGMENTS]
    done = text_done_event(info(), SEGMENTS, logprobs=True)

    assert deltas[0] == {
        "type": "transcript.text.delta",
        "delta": "Hello there.",
        "logprobs": [{"token": "Hello", "logprob": -0.5, "bytes": list(b"Hello")}],
    }
    assert "".join(d["delta"] for d in deltas) == done["text"]
    assert done["type"] == "transcript.text.done"
    assert len(done["logprobs"]) == 2
    audio_tokens = 3724.1 * 50
    assert done["usage"] == {
        "type": "tokens",
        "input_tokens": 3 + round(audio_tokens),
        "input_token_details": {"text_tokens": 3, "audio_tokens": round(audio_tokens)},
        "output_tokens": 6,
        "total_tokens": 3 + round(audio_tokens) + 6,
    }
