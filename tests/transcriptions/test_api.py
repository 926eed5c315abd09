"""POST /v1/audio/transcriptions and /v1/audio/translations through the official SDK.

The audio is Hearth's own speech: sentences synthesized by /v1/audio/speech are
transcribed back by Whisper on the live server. Clips stay short, since
Whisper base runs at about a third of real time on two cores.
"""

from __future__ import annotations

import io
import itertools
import json
import re

import av
import httpx
import jiwer
import numpy as np
import openai
import pytest
import srt
import webvtt

from tests.audio_utils import decode
from tests.http.test_foundation import assert_envelope
from tests.spec import assert_matches_schema

MODEL = "whisper-1"
CLIP_TEXT = "The quick brown fox jumps over the lazy dog near the riverbank."
# Synthesized as four requests in four voices: 24 sentences, about 80 s of audio.
SENTENCE_GROUPS = {
    "alloy": [
        "The weather was warm and sunny all afternoon.",
        "She opened the window to let in some fresh air.",
        "Our train leaves the station at seven in the morning.",
        "He forgot his umbrella at the office yesterday.",
        "The children played football in the park after school.",
        "Please remember to water the plants on Friday.",
    ],
    "echo": [
        "The library closes early on public holidays.",
        "My grandmother bakes bread every Sunday morning.",
        "The doctor told him to drink more water.",
        "We watched the sunset from the top of the hill.",
        "The new bridge will open to traffic next spring.",
        "A small boat drifted slowly across the lake.",
    ],
    "nova": [
        "The museum has a large collection of old paintings.",
        "I need to buy milk, eggs, and cheese from the store.",
        "The meeting was moved to the second floor.",
        "They planted apple trees along the garden wall.",
        "Her brother works as an engineer in the city.",
        "The concert tickets sold out in a few minutes.",
    ],
    "onyx": [
        "The old clock in the hall stopped at midnight.",
        "Fresh snow covered the mountains during the night.",
        "He wrote a long letter to his best friend.",
        "The restaurant serves fish and vegetables for dinner.",
        "Turn left at the corner and walk two blocks.",
        "The cat slept quietly on the warm blanket.",
    ],
}
# Kokoro's native voices for other languages, and words their translation must keep.
FOREIGN_SPEECH = {
    "spanish": ("ef_dora", "Mi hermano tiene un perro grande y un gato negro en la casa.",
                {"brother", "dog", "cat"}),
    "french": ("ff_siwis", "Le chat dort sur le lit de ma mère.", {"cat", "bed"}),
    "italian": ("if_sara", "Il treno per Roma parte alle otto di mattina dalla stazione.",
                {"train", "station"}),
    "portuguese": ("pf_dora", "O médico trabalha no hospital da cidade todos os dias.",
                   {"hospital", "day"}),
}
# Every container the API lists: filename, muxer, codec (None: the source wav itself).
CONTAINERS = {
    "flac": ("clip.flac", "flac", "flac"),
    "mp3": ("clip.mp3", "mp3", "libmp3lame"),
    "mp4": ("clip.mp4", "mp4", "aac"),
    "mpeg": ("clip.mpeg", "mp3", "libmp3lame"),
    "mpga": ("clip.mpga", "mp3", "libmp3lame"),
    "m4a": ("clip.m4a", "ipod", "aac"),
    "ogg": ("clip.ogg", "ogg", "libopus"),
    "wav": ("clip.wav", None, None),
    "webm": ("clip.webm", "webm", "libopus"),
}


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split()


def speak(client: openai.OpenAI, text: str, voice: str = "alloy") -> bytes:
    return client.audio.speech.create(model="tts-1", voice=voice, input=text,
                                      response_format="wav").content


def transcode(wav: bytes, muxer: str, codec: str | None, *, rate: int = 24000,
              layout: str = "mono", video: bool = False) -> bytes:
    """Re-encode a wav with PyAV; `video` adds a moving picture track, `codec=None` drops audio."""
    duration = decode(wav).duration
    out = io.BytesIO()
    with av.open(io.BytesIO(wav)) as source, av.open(out, "w", format=muxer) as target:
        # Every stream must exist before the first packet writes the header.
        sound = target.add_stream(codec, rate=rate, layout=layout) if codec else None
        if video:
            picture = target.add_stream("mpeg4", rate=10)
            picture.width = picture.height = 64
            picture.pix_fmt = "yuv420p"
            for index in range(int(duration * 10) + 1):
                pixels = np.full((64, 64, 3), index * 7 % 255, np.uint8)
                frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
                frame.pts = index
                target.mux(picture.encode(frame))
            target.mux(picture.encode(None))
        if sound is not None:
            for frame in source.decode(audio=0):
                frame.pts = None  # the encoder resamples; let it number the frames
                target.mux(sound.encode(frame))
            target.mux(sound.encode(None))
    return out.getvalue()


def vtt_seconds(timestamp: str) -> float:
    hours, minutes, seconds = timestamp.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def wer(references: list[str], hypotheses: list[str]) -> float:
    return jiwer.wer([" ".join(words(r)) for r in references],
                     [" ".join(words(h)) for h in hypotheses])


@pytest.fixture(scope="module")
def clip(client: openai.OpenAI) -> bytes:
    return speak(client, CLIP_TEXT)


@pytest.fixture(scope="module")
def clip_duration(clip: bytes) -> float:
    return decode(clip).duration


@pytest.fixture(scope="module")
def sentence_audio(client: openai.OpenAI) -> list[tuple[list[str], bytes]]:
    return [(sentences, speak(client, " ".join(sentences), voice))
            for voice, sentences in SENTENCE_GROUPS.items()]


@pytest.fixture(scope="module")
def first_group_srt(client: openai.OpenAI, sentence_audio) -> str:
    return client.audio.transcriptions.create(
        model=MODEL, file=("group.wav", sentence_audio[0][1]), response_format="srt")


def assert_clip_transcript(text: str) -> None:
    assert wer([CLIP_TEXT], [text]) <= 0.15, text


# Accuracy


def test_round_trip_word_error_rate_under_ten_percent(
        client: openai.OpenAI, sentence_audio: list[tuple[list[str], bytes]]) -> None:
    references, hypotheses = [], []
    for sentences, audio in sentence_audio:
        result = client.audio.transcriptions.create(model=MODEL, file=("speech.wav", audio),
                                                    language="en")
        references.append(" ".join(sentences))
        hypotheses.append(result.text)
    assert sum(len(sentences) for sentences, _ in sentence_audio) >= 20
    error_rate = wer(references, hypotheses)
    assert error_rate < 0.10, (error_rate, hypotheses)


@pytest.mark.parametrize("language", list(FOREIGN_SPEECH))
def test_translation_to_english_keeps_key_words(client: openai.OpenAI, language: str) -> None:
    voice, text, keys = FOREIGN_SPEECH[language]
    result = client.audio.translations.create(model=MODEL, file=("speech.wav",
                                                                 speak(client, text, voice)))
    found = set(words(result.text))
    assert keys <= found | {w.rstrip("s") for w in found}, result.text


# Response formats


def test_json_is_the_default_and_matches_the_spec(client: openai.OpenAI, clip: bytes,
                                                  clip_duration: float) -> None:
    response = client.audio.transcriptions.with_raw_response.create(model=MODEL,
                                                                   file=("clip.wav", clip))
    assert response.headers["content-type"] == "application/json"
    body = response.http_response.json()
    assert_matches_schema(body, "CreateTranscriptionResponseJson")
    assert_clip_transcript(body["text"])
    assert body["usage"] == {"type": "duration", "seconds": int(np.ceil(clip_duration))}


def test_text_is_plain(client: openai.OpenAI, clip: bytes) -> None:
    response = client.audio.transcriptions.with_raw_response.create(
        model=MODEL, file=("clip.wav", clip), response_format="text")
    assert response.headers["content-type"].startswith("text/plain")
    assert_clip_transcript(response.http_response.text)


def test_srt_parses_with_monotonic_times_inside_the_audio(
        first_group_srt: str, sentence_audio: list[tuple[list[str], bytes]]) -> None:
    cues = list(srt.parse(first_group_srt))
    assert len(cues) >= 2
    duration = decode(sentence_audio[0][1]).duration
    assert [cue.index for cue in cues] == list(range(1, len(cues) + 1))
    assert all(0 <= c.start.total_seconds() < c.end.total_seconds() <= duration for c in cues)
    assert all(a.end <= b.start for a, b in itertools.pairwise(cues))
    assert wer([" ".join(sentence_audio[0][0])], [" ".join(c.content for c in cues)]) < 0.15


def test_vtt_parses_with_monotonic_times_inside_the_audio(
        client: openai.OpenAI, clip: bytes, clip_duration: float) -> None:
    response = client.audio.transcriptions.with_raw_response.create(
        model=MODEL, file=("clip.wav", clip), response_format="vtt")
    assert response.headers["content-type"].startswith("text/plain")
    captions = webvtt.from_buffer(io.StringIO(response.http_response.text)).captions
    assert captions
    times = [(vtt_seconds(c.start), vtt_seconds(c.end)) for c in captions]
    assert all(0 <= start < end <= clip_duration for start, end in times)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(times))
    assert_clip_transcript(" ".join(c.text for c in captions))


def test_verbose_json_with_words_and_segments(client: openai.OpenAI, clip: bytes,
                                              clip_duration: float) -> None:
    result = client.audio.transcriptions.create(
        model=MODEL, file=("clip.wav", clip), response_format="verbose_json",
        timestamp_granularities=["word", "segment"])
    body = result.model_dump(exclude_unset=True)
    assert_matches_schema(body, "CreateTranscriptionResponseVerboseJson")
    assert body["task"] == "transcribe" and body["language"] == "english"
    assert body["duration"] == pytest.approx(clip_duration, abs=0.01)
    assert_clip_transcript(body["text"])
    assert [w["word"].lower().strip(".,") for w in body["words"]][:3] == ["the", "quick", "brown"]
    starts = [w["start"] for w in body["words"]]
    assert starts == sorted(starts) and body["words"][-1]["end"] <= clip_duration
    segment = body["segments"][0]
    assert segment["id"] == 0 and segment["avg_logprob"] < 0 and segment["tokens"]


def test_verbose_json_granularities_choose_what_is_returned(client: openai.OpenAI,
                                                            clip: bytes) -> None:
    default = client.audio.transcriptions.create(model=MODEL, file=("clip.wav", clip),
                                                 response_format="verbose_json")
    assert default.segments and default.words is None
    only_words = client.audio.transcriptions.create(
        model=MODEL, file=("clip.wav", clip), response_format="verbose_json",
        timestamp_granularities=["word"])
    assert only_words.words and only_words.segments is None


def test_translation_verbose_json_matches_the_spec(client: openai.OpenAI) -> None:
    voice, text, _ = FOREIGN_SPEECH["spanish"]
    result = client.audio.translations.create(model=MODEL, file=("es.wav", speak(client, text,
                                                                                  voice)),
                                              response_format="verbose_json")
    body = result.model_dump(exclude_unset=True)
    assert_matches_schema(body, "CreateTranslationResponseVerboseJson")
    assert body["language"] == "english" and body["segments"]


def test_translation_plain_formats(client: openai.OpenAI, clip: bytes) -> None:
    text = client.audio.translations.create(model=MODEL, file=("clip.wav", clip),
                                            response_format="text")
    assert_clip_transcript(text)
    cues = list(srt.parse(client.audio.translations.create(
        model=MODEL, file=("clip.wav", clip), response_format="srt")))
    assert cues and cues[0].start.total_seconds() == 0


# Containers


@pytest.mark.parametrize("name", list(CONTAINERS))
def test_every_listed_container_decodes(client: openai.OpenAI, clip: bytes, name: str) -> None:
    filename, muxer, codec = CONTAINERS[name]
    data = clip if muxer is None else transcode(clip, muxer, codec)
    result = client.audio.transcriptions.create(model=MODEL, file=(filename, data),
                                                language="en")
    assert_clip_transcript(result.text)


def test_video_with_a_stereo_audio_track(client: openai.OpenAI, clip: bytes) -> None:
    video = transcode(clip, "mp4", "aac", rate=48000, layout="stereo", video=True)
    result = client.audio.transcriptions.create(model=MODEL, file=("video.mp4", video))
    assert_clip_transcript(result.text)


# Options


def test_stream_deltas_concatenate_to_the_final_text(
        client: openai.OpenAI, sentence_audio: list[tuple[list[str], bytes]]) -> None:
    events = list(client.audio.transcriptions.create(
        model=MODEL, file=("group.wav", sentence_audio[1][1]), stream=True))
    *deltas, done = [event.model_dump(exclude_unset=True) for event in events]
    assert len(deltas) >= 2
    for delta in deltas:
        assert_matches_schema(delta, "TranscriptTextDeltaEvent")
    assert_matches_schema(done, "TranscriptTextDoneEvent")
    assert "".join(d["delta"] for d in deltas) == done["text"]
    usage = done["usage"]
    assert usage["input_token_details"]["audio_tokens"] > 0 and usage["output_tokens"] > 0
    assert wer([" ".join(sentence_audio[1][0])], [done["text"]]) < 0.15


def test_logprobs_are_real_and_negative(client: openai.OpenAI, clip: bytes) -> None:
    result = client.audio.transcriptions.create(model=MODEL, file=("clip.wav", clip),
                                                include=["logprobs"])
    body = result.model_dump(exclude_unset=True)
    assert_matches_schema(body, "CreateTranscriptionResponseJson")
    logprobs = body["logprobs"]
    assert logprobs and all(entry["logprob"] <= 0 for entry in logprobs)
    assert any(entry["logprob"] < 0 for entry in logprobs)
    assert "".join(entry["token"] for entry in logprobs).strip() == body["text"]
    assert all(bytes(int(b) for b in e["bytes"]).decode() == e["token"] for e in logprobs)


def test_streamed_logprobs(client: openai.OpenAI, clip: bytes) -> None:
    events = list(client.audio.transcriptions.create(
        model=MODEL, file=("clip.wav", clip), stream=True, include=["logprobs"]))
    done = events[-1]
    assert done.type == "transcript.text.done"
    delta_logprobs = [lp for event in events[:-1] for lp in event.logprobs or ()]
    assert delta_logprobs and [lp.token for lp in delta_logprobs] == [
        lp.token for lp in done.logprobs]


def test_prompt_and_temperature_are_accepted(client: openai.OpenAI, clip: bytes) -> None:
    result = client.audio.transcriptions.create(
        model=MODEL, file=("clip.wav", clip), prompt="A sentence about a fox and a dog.",
        temperature=0.2)
    assert_clip_transcript(result.text)


@pytest.mark.parametrize("strategy", [
    "auto", {"type": "server_vad", "threshold": 0.4, "prefix_padding_ms": 200,
             "silence_duration_ms": 300}])
def test_chunking_strategy(client: openai.OpenAI, clip: bytes, strategy) -> None:
    result = client.audio.transcriptions.create(model=MODEL, file=("clip.wav", clip),
                                                chunking_strategy=strategy)
    assert_clip_transcript(result.text)


def test_chunking_strategy_as_a_json_field(http: httpx.Client, clip: bytes) -> None:
    strategy = json.dumps({"type": "server_vad", "silence_duration_ms": 500})
    response = http.post("/v1/audio/transcriptions", files={"file": ("clip.wav", clip)},
                         data={"model": MODEL, "chunking_strategy": strategy})
    assert response.status_code == 200, response.text
    assert_clip_transcript(response.json()["text"])


def test_newer_model_names_are_served(client: openai.OpenAI, clip: bytes) -> None:
    for name in ("gpt-4o-transcribe", "gpt-4o-mini-transcribe"):
        assert_clip_transcript(client.audio.transcriptions.create(
            model=name, file=("clip.wav", clip)).text)


# Errors


def post(http: httpx.Client, fields: dict[str, str], files: dict | None = None,
         path: str = "/v1/audio/transcriptions") -> httpx.Response:
    parts = [(name, (None, value)) for name, value in fields.items()]
    parts += list((files or {}).items())
    return http.post(path, files=parts)


@pytest.mark.parametrize("path", ["/v1/audio/transcriptions", "/v1/audio/translations"])
def test_missing_file(http: httpx.Client, path: str) -> None:
    assert_envelope(post(http, {"model": MODEL}, path=path), 400, param="file")


@pytest.mark.parametrize(("content", "message"), [
    (b"RIFF" + bytes(range(256)) * 8, "could not be decoded"),
    (b"", "empty"),
])
def test_unreadable_files(http: httpx.Client, content: bytes, message: str) -> None:
    response = post(http, {"model": MODEL}, {"file": ("clip.wav", content)})
    assert message in assert_envelope(response, 400, param="file")["message"]


def test_video_without_audio(http: httpx.Client, clip: bytes) -> None:
    video = transcode(clip, "mp4", None, video=True)
    response = post(http, {"model": MODEL}, {"file": ("video.mp4", video)})
    assert "no audio" in assert_envelope(response, 400, param="file")["message"]


def test_truncated_file_transcribes_what_is_there(http: httpx.Client, clip: bytes) -> None:
    mp3 = transcode(clip, "mp3", "libmp3lame")
    response = post(http, {"model": MODEL}, {"file": ("clip.mp3", mp3[: len(mp3) // 2])})
    assert response.status_code == 200, response.text
    assert words(response.json()["text"])[:3] == ["the", "quick", "brown"]


@pytest.mark.parametrize("path", ["/v1/audio/transcriptions", "/v1/audio/translations"])
def test_unknown_model(http: httpx.Client, clip: bytes, path: str) -> None:
    response = post(http, {"model": "whisper-9"}, {"file": ("clip.wav", clip)}, path)
    assert_envelope(response, 404, param="model", code="model_not_found")


def test_speech_model_is_refused(http: httpx.Client, clip: bytes) -> None:
    response = post(http, {"model": "tts-1"}, {"file": ("clip.wav", clip)})
    assert_envelope(response, 400, param="model", code="model_not_supported")


@pytest.mark.parametrize(("fields", "param"), [
    ({"language": "xx"}, "language"),
    ({"language": "english"}, "language"),
    ({"temperature": "1.5"}, "temperature"),
    ({"temperature": "-0.1"}, "temperature"),
    ({"temperature": "warm"}, "temperature"),
    ({"timestamp_granularities[]": "word"}, "timestamp_granularities"),
    ({"timestamp_granularities[]": "sentence", "response_format": "verbose_json"},
     "timestamp_granularities[0]"),
    ({"response_format": "diarized_json"}, "response_format"),
    ({"response_format": "docx"}, "response_format"),
    ({"include[]": "logprobs", "response_format": "verbose_json"}, "include"),
    ({"include[]": "tokens"}, "include[0]"),
    ({"stream": "true", "response_format": "srt"}, "stream"),
    ({"stream": "sometimes"}, "stream"),
    ({"chunking_strategy": "manual"}, "chunking_strategy"),
    ({"chunking_strategy": "{not json"}, "chunking_strategy"),
    ({"chunking_strategy[type]": "server_vad", "chunking_strategy[threshold]": "3"},
     "chunking_strategy"),
    ({"keywords[]": "fox"}, "keywords"),
    ({"known_speaker_names[]": "agent"}, "known_speaker_names"),
    ({"speed": "2"}, "speed"),
])
def test_invalid_transcription_fields(http: httpx.Client, clip: bytes, fields: dict[str, str],
                                      param: str) -> None:
    response = post(http, {"model": MODEL, **fields}, {"file": ("clip.wav", clip)})
    assert_envelope(response, 400, param=param)


@pytest.mark.parametrize(("fields", "param"), [
    ({"language": "fr"}, "language"),
    ({"response_format": "diarized_json"}, "response_format"),
    ({"stream": "true"}, "stream"),
    ({"temperature": "2"}, "temperature"),
])
def test_invalid_translation_fields(http: httpx.Client, clip: bytes, fields: dict[str, str],
                                    param: str) -> None:
    response = post(http, {"model": MODEL, **fields}, {"file": ("clip.wav", clip)},
                    "/v1/audio/translations")
    assert_envelope(response, 400, param=param)


def test_missing_model(http: httpx.Client, clip: bytes) -> None:
    assert_envelope(post(http, {}, {"file": ("clip.wav", clip)}), 400, param="model")


def test_json_body_is_refused(http: httpx.Client) -> None:
    response = http.post("/v1/audio/transcriptions", json={"model": MODEL})
    assert_envelope(response, 415, code="unsupported_media_type")


def test_file_over_25_mib_is_413(http: httpx.Client) -> None:
    body = bytes(26 * 1024 * 1024)
    response = post(http, {"model": MODEL}, {"file": ("big.wav", body)})
    assert_envelope(response, 413, code="request_too_large")


def test_file_just_over_the_limit_is_413(http: httpx.Client) -> None:
    body = bytes(25 * 1024 * 1024 + 1)
    response = post(http, {"model": MODEL}, {"file": ("big.wav", body)})
    assert_envelope(response, 413, param="file", code="file_too_large")


def test_sdk_raises_its_error_classes(client: openai.OpenAI, clip: bytes) -> None:
    with pytest.raises(openai.NotFoundError):
        client.audio.transcriptions.create(model="nope", file=("clip.wav", clip))
    with pytest.raises(openai.BadRequestError) as error:
        client.audio.transcriptions.create(model=MODEL, file=("clip.wav", b"not audio"))
    assert error.value.param == "file"
