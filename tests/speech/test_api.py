"""POST /v1/audio/speech through the official SDK, against the live server."""

from __future__ import annotations

import base64
import json
import threading
import time

import httpx
import numpy as np
import openai
import pytest

from tests.audio_utils import decode, decode_pcm16
from tests.conftest import LiveServer
from tests.ops.test_ops import metric
from tests.spec import assert_matches_schema

SENTENCE = "The quick brown fox jumps over the lazy dog near the riverbank."
EXPECTED_TYPES = {
    "mp3": ("audio/mpeg", "mp3"),
    "opus": ("audio/opus", "opus"),
    "aac": ("audio/aac", "aac"),
    "flac": ("audio/flac", "flac"),
    "wav": ("audio/wav", "pcm_s16le"),
}
OPENAI_VOICES = ["alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage",
                 "shimmer", "verse", "marin", "cedar"]


@pytest.fixture(scope="module")
def reference_wav(client: openai.OpenAI) -> bytes:
    return client.audio.speech.create(model="tts-1", voice="alloy", input=SENTENCE,
                                      response_format="wav").content


def test_wav_is_24khz_speech_of_plausible_length(reference_wav: bytes) -> None:
    audio = decode(reference_wav)
    assert audio.sample_rate == 24000
    # About 13 words: two to eight seconds of speech, and not silence.
    assert 2.0 < audio.duration < 8.0
    assert np.sqrt(np.mean(audio.samples**2)) > 0.01


@pytest.mark.parametrize("fmt", list(EXPECTED_TYPES))
def test_every_format_decodes(client: openai.OpenAI, reference_wav: bytes, fmt: str) -> None:
    response = client.audio.speech.with_raw_response.create(
        model="tts-1", voice="alloy", input=SENTENCE, response_format=fmt)
    content_type, codec = EXPECTED_TYPES[fmt]
    assert response.headers["content-type"] == content_type
    audio = decode(response.content)
    assert codec in audio.codec
    expected_rate = 48000 if fmt == "opus" else 24000
    assert audio.sample_rate == expected_rate
    assert abs(audio.duration - decode(reference_wav).duration) < 0.15


def test_pcm_is_raw_24khz_s16le(client: openai.OpenAI, reference_wav: bytes) -> None:
    response = client.audio.speech.with_raw_response.create(
        model="tts-1", voice="alloy", input=SENTENCE, response_format="pcm")
    assert response.headers["content-type"] == "audio/pcm"
    pcm = decode_pcm16(response.content)
    reference = decode(reference_wav)
    assert abs(pcm.duration - reference.duration) < 0.05
    assert not response.content.startswith(b"RIFF")


def test_mp3_is_the_default(client: openai.OpenAI) -> None:
    response = client.audio.speech.with_raw_response.create(model="tts-1", voice="alloy",
                                                            input="Hello there.")
    assert response.headers["content-type"] == "audio/mpeg"
    assert "mp3" in decode(response.content).codec


@pytest.mark.parametrize("speed", [0.25, 0.5, 2.0, 4.0])
def test_speed_scales_duration(client: openai.OpenAI, reference_wav: bytes, speed: float) -> None:
    audio = decode(client.audio.speech.create(model="tts-1", voice="alloy", input=SENTENCE,
                                              response_format="wav", speed=speed).content)
    ratio = audio.duration / decode(reference_wav).duration
    assert ratio == pytest.approx(1 / speed, rel=0.2)


def test_every_openai_voice_is_distinct(client: openai.OpenAI) -> None:
    fingerprints = []
    for voice in OPENAI_VOICES:
        audio = decode_pcm16(client.audio.speech.create(
            model="tts-1", voice=voice, input="Good morning.", response_format="pcm").content)
        assert audio.duration > 0.3, voice
        fingerprints.append(audio.samples[:12000])
    for i in range(len(fingerprints)):
        for j in range(i + 1, len(fingerprints)):
            a, b = fingerprints[i], fingerprints[j]
            n = min(len(a), len(b))
            assert not np.allclose(a[:n], b[:n], atol=1e-3), (OPENAI_VOICES[i], OPENAI_VOICES[j])


def test_native_voice_and_object_form(client: openai.OpenAI) -> None:
    native = client.audio.speech.create(model="kokoro-82m", voice="bf_emma", input="Hello.",
                                        response_format="pcm").content
    as_object = client.audio.speech.create(model="kokoro-82m", voice={"id": "bf_emma"},
                                           input="Hello.", response_format="pcm").content
    assert native == as_object and len(native) > 10000


def test_long_input_is_spoken_whole(client: openai.OpenAI) -> None:
    # The engine's unit tests check a full 4096-character text splits without loss;
    # here a shorter one goes through the whole server, model included.
    sentences = [f"Sentence number {i} talks about the weather in a calm voice." for i in range(20)]
    text = " ".join(sentences)
    audio = decode_pcm16(client.audio.speech.create(model="tts-1", voice="alloy", input=text,
                                                    response_format="pcm").content)
    short = decode_pcm16(client.audio.speech.create(model="tts-1", voice="alloy", input=sentences[1],
                                                    response_format="pcm").content)
    # 64 sentences of the same shape: roughly 64 times as long, nothing dropped.
    assert audio.duration / short.duration == pytest.approx(len(text) / len(sentences[1]), rel=0.25)


def test_streaming_delivers_audio_before_the_end(client: openai.OpenAI) -> None:
    """The audio goes out in pieces as it is made: a chunked response of unknown length, many
    pieces. (That synthesis itself goes sentence by sentence, and stops when the client leaves,
    is test_disconnect_stops_synthesis.)"""
    text = " ".join(["This sentence is here to make a long answer."] * 20)
    with client.audio.speech.with_streaming_response.create(
            model="tts-1", voice="alloy", input=text, response_format="pcm") as response:
        assert response.headers.get("transfer-encoding") == "chunked"
        assert "content-length" not in response.headers
        sizes = [len(chunk) for chunk in response.iter_bytes() if chunk]
    assert len(sizes) > 1 and sum(sizes) > 20 * 24_000 * 2  # at least a second of 24 kHz 16-bit audio a sentence


def _sse_events(raw: bytes) -> list[dict]:
    events = []
    for block in raw.decode().split("\n\n"):
        data = [line[len("data: "):] for line in block.splitlines() if line.startswith("data: ")]
        if data:
            events.append(json.loads("\n".join(data)))
    return events


def test_sse_stream_format(client: openai.OpenAI) -> None:
    response = client.audio.speech.with_raw_response.create(
        model="gpt-4o-mini-tts", voice="coral", input="One. Two. Three.",
        response_format="wav", stream_format="sse")
    assert response.headers["content-type"].startswith("text/event-stream")
    events = _sse_events(response.content)
    *deltas, done = events
    assert deltas and all(event["type"] == "speech.audio.delta" for event in deltas)
    for event in deltas:
        assert_matches_schema(event, "SpeechAudioDeltaEvent")
    assert_matches_schema(done, "SpeechAudioDoneEvent")
    usage = done["usage"]
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    audio = decode(b"".join(base64.b64decode(event["audio"]) for event in deltas))
    assert audio.sample_rate == 24000 and audio.duration > 1.0


def test_instructions_accepted_for_gpt_4o_mini_tts(client: openai.OpenAI) -> None:
    audio = client.audio.speech.create(model="gpt-4o-mini-tts", voice="nova", input="Hello.",
                                       instructions="Speak in a cheerful tone.",
                                       response_format="wav").content
    assert decode(audio).duration > 0.3


def test_voices_listing(http: httpx.Client) -> None:
    voices = http.get("/v1/audio/voices").json()["data"]
    names = {voice["id"] for voice in voices}
    assert len(names) == 54 and {"af_alloy", "am_echo", "bm_fable", "ff_siwis"} <= names
    aliases = {voice["openai_alias"] for voice in voices if voice["openai_alias"]}
    assert aliases == set(OPENAI_VOICES)


# Errors ------------------------------------------------------------------------

def _bad(client: openai.OpenAI, error: type[openai.APIStatusError], **overrides) -> dict:
    params = {"model": "tts-1", "voice": "alloy", "input": "Hello.", **overrides}
    with pytest.raises(error) as caught:
        client.audio.speech.create(**params)
    return caught.value.body


def test_unknown_model_is_404(client: openai.OpenAI) -> None:
    assert _bad(client, openai.NotFoundError, model="tts-9")["code"] == "model_not_found"


def test_unknown_voice_lists_valid_ones(client: openai.OpenAI) -> None:
    body = _bad(client, openai.BadRequestError, voice="darth")
    assert body["param"] == "voice" and "alloy" in body["message"] and "af_bella" in body["message"]


@pytest.mark.parametrize("text", ["", "a" * 4097])
def test_input_length_is_checked(client: openai.OpenAI, text: str) -> None:
    assert _bad(client, openai.BadRequestError, input=text)["param"] == "input"


@pytest.mark.parametrize("speed", [0.1, 4.5])
def test_speed_range_is_checked(client: openai.OpenAI, speed: float) -> None:
    assert _bad(client, openai.BadRequestError, speed=speed)["param"] == "speed"


def test_unknown_format_is_400(client: openai.OpenAI) -> None:
    assert _bad(client, openai.BadRequestError, response_format="ogg")["param"] == "response_format"


def test_sse_is_refused_for_tts_1(client: openai.OpenAI) -> None:
    assert _bad(client, openai.BadRequestError, stream_format="sse")["param"] == "stream_format"


def test_transcription_model_is_not_a_voice_model(client: openai.OpenAI) -> None:
    with pytest.raises((openai.BadRequestError, openai.NotFoundError)):
        client.audio.speech.create(model="whisper-1", voice="alloy", input="Hello.")


# Concurrency -------------------------------------------------------------------

def test_other_requests_answer_while_speech_is_synthesized(server: LiveServer) -> None:
    """Synthesis runs on the model's thread, never the event loop: while a long speech is still
    in progress (it holds its place at the model until its last sentence), /v1/models answers."""
    client = server.client()
    text = " ".join(["A long passage keeps the speech model busy for a while."] * 30)
    worker = threading.Thread(target=lambda: client.audio.speech.create(
        model="tts-1", voice="alloy", input=text, response_format="pcm"))
    in_flight = {"name": "hearth_model_requests_in_flight", "model": "kokoro-82m", "lane": "online"}
    worker.start()
    deadline = time.monotonic() + 60
    while metric(server.base_url, **in_flight) < 1:
        assert time.monotonic() < deadline, "the speech request never started"
        time.sleep(0.05)
    assert client.models.list().data
    assert metric(server.base_url, **in_flight) == 1, "the speech ended before /v1/models answered"
    worker.join()


@pytest.mark.parametrize(("model", "stream_format"), [("tts-1", "audio"), ("gpt-4o-mini-tts", "sse")])
def test_disconnect_stops_synthesis(server: LiveServer, model: str, stream_format: str) -> None:
    """A client that hangs up after the first piece stops the synthesis, audio or SSE: the
    abandoned request makes (and is metered for) a few sentences of audio, not the sixty it asked
    for (about 200 seconds)."""
    spoken = {"name": "hearth_audio_seconds_total", "model": model, "kind": "audio_speeches"}
    before = metric(server.base_url, **spoken)
    long_text = " ".join(["This long request will be abandoned after its first sentence."] * 60)
    with httpx.stream("POST", f"{server.base_url}/v1/audio/speech", timeout=60,
                      headers={"Authorization": f"Bearer {server.api_key}"},
                      json={"model": model, "voice": "alloy", "input": long_text, "response_format": "pcm",
                            "stream_format": stream_format}) as response:
        assert response.status_code == 200
        next(response.iter_bytes())
    deadline = time.monotonic() + 120
    while (made := metric(server.base_url, **spoken) - before) == 0:
        assert time.monotonic() < deadline, "the abandoned synthesis never ended"
        time.sleep(0.2)
    assert 0 < made < 40, f"{made:.0f} s of audio made for a client that left after the first sentence"


# A second, minimal server: authentication off, no queue beyond the one worker.

@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory, models_dir) -> LiveServer:
    from tests.conftest import start_server, stop_server

    live = start_server(tmp_path_factory.mktemp("open-server"), models_dir,
                        HEARTH_AUTH="disabled", HEARTH_QUEUE_DEPTH="0",
                        HEARTH_DEFAULT_MODELS='["kokoro-82m"]')
    yield live
    stop_server(live)


def test_auth_disabled_serves_without_a_key(open_server: LiveServer) -> None:
    response = httpx.get(f"{open_server.base_url}/v1/models")
    assert response.status_code == 200
    assert "kokoro-82m" in {model["id"] for model in response.json()["data"]}


def test_full_queue_is_429_with_retry_after(open_server: LiveServer) -> None:
    client = open_server.client(api_key="unused")
    text = " ".join(["This request holds the only worker for a few seconds."] * 6)
    with client.audio.speech.with_streaming_response.create(
            model="tts-1", voice="alloy", input=text, response_format="pcm") as busy:
        chunks = busy.iter_bytes()  # kept open: dropping it would hang up on the server
        next(chunks)
        with pytest.raises(openai.RateLimitError) as caught:
            client.audio.speech.create(model="tts-1", voice="alloy", input="Hi.")
    assert caught.value.response.headers["retry-after"].isdigit()
    assert caught.value.body["type"] == "rate_limit_error"
