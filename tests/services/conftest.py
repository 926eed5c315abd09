"""Fake engines behind the real registry, model service and runners, for in-process service tests.

Each fake exposes what its service calls on ``model.engine`` and answers in
the shapes the real engine returns, deterministically and without weights:
the llama fake echoes words (one word, one token), the speech fake makes
50 ms of audio a word, the whisper fake hears three fixed segments. The
registry is Hearth's own, with a fake-backed ``LoadedModel`` already in
place for every model that has an engine; a catalog model without one is
simply not pulled.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hearth.accounting.meter import RecordingMeter, UsageEvent
from hearth.caller import Caller
from hearth.catalog.catalog import Catalog, ModelSpec
from hearth.catalog.provision import ModelStore
from hearth.engines import llama
from hearth.engines.embeddings import InputTooLong, InvalidTokens
from hearth.engines.kokoro import OPENAI_VOICES, KokoroEngine, NothingToSay, UnknownVoice, Utterance
from hearth.engines.moderation import CATEGORIES, ModerationResult
from hearth.engines.nsfw import ImageDecodeError
from hearth.engines.openai_tokens import UnknownTokens
from hearth.engines.registry import LoadedModel, ModelRegistry
from hearth.engines.runner import ModelRunner
from hearth.engines.whisper import (
    SAMPLE_RATE,
    Segment,
    TranscriptionInfo,
    TranscriptionOptions,
    UnsupportedLanguageError,
)
from hearth.models.service import ModelService
from hearth.settings import Settings

# How long a test waits on a thread it holds before giving up (a failure, never a timing check).
DEADLINE = 30.0

CALLER = Caller(organization_id="org_test", project_id="proj_test", api_key_id="key_test")
CREATED = 1_700_000_000


def _spec(id_: str, kind: str, engine: str, *aliases: str) -> ModelSpec:
    return ModelSpec(id=id_, kind=kind, engine=engine, description=f"fake {kind} model",
                     owned_by="hearth", created=CREATED, aliases=aliases)


SPECS = [
    _spec("fake-llama", "chat", "llama", "gpt-4o-mini"),
    _spec("fake-kokoro", "speech", "kokoro", "tts-1", "gpt-4o-mini-tts"),
    _spec("fake-whisper", "transcription", "whisper", "whisper-1"),
    _spec("fake-minilm", "embedding", "embeddings", "text-embedding-3-small"),
    _spec("fake-moderation", "moderation", "moderation", "omni-moderation-latest"),
    _spec("unpulled-llama", "chat", "llama", "gpt-4o"),
]


# -- llama.cpp ------------------------------------------------------------------------


def _logprobs(words: Sequence[str]) -> dict[str, Any]:
    return {"content": [{"token": word, "logprob": -0.5, "bytes": list(word.encode()), "top_logprobs": []}
                        for word in words]}


class FakeLlama:
    """Chat that echoes the last user message and completion that repeats the prompt, word by word.

    A word is a token. A choice that ends by itself also generates an end
    token, counted in usage but not in the text, as llama.cpp counts it. A
    request whose prompt plus ``max_tokens`` exceeds the context is refused
    as llama.cpp refuses it; a named tool choice is answered, whole, with one
    call to that tool. A whole answer to a message that says "hold" is held
    until its ``stop`` is set, and then stopped as llama.cpp stops one.
    """

    n_parallel = 2
    context_length = 64
    vocab_size = 1000

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.ended = threading.Event()  # a stream's generator finished or was closed
        self.holding = threading.Event()  # a "hold" answer has started generating
        self._vocabulary: dict[str, int] = {}

    # -- tokens

    def tokenize(self, text: str) -> list[int]:
        return [self._vocabulary.setdefault(word, len(self._vocabulary)) for word in text.split()]

    def detokenize(self, tokens: list[int]) -> str:
        words = {token: word for word, token in self._vocabulary.items()}
        return " ".join(words.get(token, f"<{token}>") for token in tokens)

    def _generate(self, words: list[str], prompt_tokens: int, max_tokens: int | None
                  ) -> tuple[list[str], str, int]:
        """The words said, why they end, and the tokens generated."""
        if prompt_tokens + (max_tokens or 0) > self.context_length:
            raise llama.ContextLengthExceeded(
                f"the request needs {prompt_tokens + (max_tokens or 0)} tokens", "messages")
        if max_tokens is not None and max_tokens <= len(words):
            return words[:max_tokens], "length", max_tokens
        return words, "stop", len(words) + 1

    @staticmethod
    def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
        return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens}

    # -- chat

    def _chat_answer(self, request: dict[str, Any]) -> tuple[list[str], str, int, int]:
        self.requests.append(request)
        messages = request["messages"]
        said = [message["content"] for message in messages if message["role"] == "user"][-1]
        prompt_tokens = sum(len(message["content"].split()) for message in messages)
        words, finish, generated = self._generate(said.split(), prompt_tokens, request.get("max_tokens"))
        return words, finish, prompt_tokens, generated

    def _hold(self, said: str, stop: threading.Event | None) -> None:
        if said.split()[:1] == ["hold"]:
            self.holding.set()
            if stop is None or not stop.wait(timeout=30):
                raise AssertionError("a held answer was never stopped")
            raise llama.Stopped("the caller stopped waiting for the answer")

    def chat(self, request: dict[str, Any], stop: threading.Event | None = None) -> dict[str, Any]:
        words, finish, prompt_tokens, generated = self._chat_answer(request)
        self._hold(" ".join(words), stop)
        message: dict[str, Any] = {"role": "assistant", "content": " ".join(words)}
        if isinstance(choice := request.get("tool_choice"), dict):
            message = {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_fake", "type": "function",
                 "function": {"name": choice["function"]["name"], "arguments": json.dumps({"words": words})}}]}
            finish = "tool_calls"
        choices = [{"index": index, "message": message, "finish_reason": finish,
                    "logprobs": _logprobs(words) if request.get("logprobs") else None}
                   for index in range(request.get("n") or 1)]
        # llama.cpp reports the tokens of one choice, however many there are.
        return {"id": "chatcmpl-fake", "object": "chat.completion", "created": CREATED,
                "model": request["model"], "choices": choices, "usage": self._usage(prompt_tokens, generated)}

    def chat_stream(self, request: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Each choice in turn: a role chunk, a chunk a word, a finish chunk, then its usage."""
        frame = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": CREATED,
                 "model": request["model"], "system_fingerprint": "b0-fake"}
        try:
            words, finish, prompt_tokens, generated = self._chat_answer(request)
            for index in range(request.get("n") or 1):
                yield {**frame, "choices": [{"index": index, "delta": {"role": "assistant", "content": None},
                                             "finish_reason": None}]}
                for position, word in enumerate(words):
                    choice = {"index": index, "delta": {"content": word if position == 0 else f" {word}"},
                              "finish_reason": None}
                    if request.get("logprobs"):
                        choice["logprobs"] = _logprobs([word])
                    yield {**frame, "choices": [choice]}
                yield {**frame, "choices": [{"index": index, "delta": {}, "finish_reason": finish}]}
                if (request.get("stream_options") or {}).get("include_usage"):
                    yield {**frame, "choices": [], "usage": self._usage(prompt_tokens, generated)}
        finally:
            self.ended.set()

    # -- legacy completions

    def _prompts(self, prompt: Any) -> list[str]:
        if isinstance(prompt, str):
            return [prompt]
        if prompt and isinstance(prompt[0], int):
            return [self.detokenize(prompt)]
        return [item if isinstance(item, str) else self.detokenize(item) for item in prompt]

    def _completions(self, request: dict[str, Any]) -> Iterator[tuple[int, str, list[str], str, int, int]]:
        """Per choice: its index, echoed prompt, words, finish reason, prompt and generated tokens."""
        self.requests.append(request)
        if request.get("suffix"):
            raise llama.InvalidRequest("this model does not support suffix (fill-in-the-middle)", "suffix")
        n = request.get("n") or 1
        for prompt_index, prompt in enumerate(self._prompts(request["prompt"])):
            prompt_tokens = len(prompt.split())
            words, finish, generated = self._generate(prompt.split(), prompt_tokens, request.get("max_tokens"))
            echo = prompt if request.get("echo") else ""
            for choice in range(n):
                yield prompt_index * n + choice, echo, words, finish, prompt_tokens, generated

    def complete(self, request: dict[str, Any], stop: threading.Event | None = None) -> dict[str, Any]:
        answers = list(self._completions(request))
        self._hold(" ".join(answers[0][2]), stop)
        choices = [{"index": index, "text": echo + "".join(f" {word}" for word in words), "logprobs": None,
                    "finish_reason": finish} for index, echo, words, finish, _, _ in answers]
        _, _, _, _, prompt_tokens, generated = answers[0]
        return {"id": "cmpl-fake", "object": "text_completion", "created": CREATED, "model": request["model"],
                "choices": choices, "usage": self._usage(prompt_tokens, generated)}

    def complete_stream(self, request: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Each choice in turn: a chunk a word (the echo on its first), then a finish chunk with usage."""
        frame = {"id": "cmpl-fake", "object": "text_completion", "created": CREATED, "model": request["model"]}
        try:
            for index, echo, words, finish, prompt_tokens, generated in self._completions(request):
                for position, word in enumerate(words):
                    text = (echo if position == 0 else "") + f" {word}"
                    yield {**frame, "choices": [{"index": index, "text": text, "logprobs": None,
                                                 "finish_reason": None}]}
                yield {**frame, "choices": [{"index": index, "text": "", "logprobs": None, "finish_reason": finish}],
                       "usage": self._usage(prompt_tokens, generated)}
        finally:
            self.ended.set()


# -- speech -----------------------------------------------------------------------------


class FakeKokoro:
    """Two voices; each sentence is a chunk of 50 ms of samples per word (divided by speed)."""

    sample_rate = 24_000
    language_of = staticmethod(KokoroEngine.language_of)

    def voices(self) -> list[str]:
        return ["af_alloy", "bm_fable"]

    def prepare(self, text: str, voice: str, speed: float = 1.0) -> Utterance:
        native = OPENAI_VOICES.get(voice, voice)
        if native not in self.voices():
            raise UnknownVoice(voice, [*OPENAI_VOICES, *self.voices()])
        pieces = [piece for piece in re.split(r"(?<=[.!?])\s+", text) if any(c.isalnum() for c in piece)]
        if not pieces:
            raise NothingToSay(text)
        return Utterance(tuple(pieces), native, speed, tokens=sum(len(piece) for piece in pieces))

    def speak(self, utterance: Utterance) -> Iterator[np.ndarray]:
        for piece in utterance.pieces:
            samples = round(len(piece.split()) * 0.05 * self.sample_rate / utterance.speed)
            yield np.full(samples, 0.1, dtype=np.float32)


# -- transcription ------------------------------------------------------------------------

SEGMENT_TEXTS = ("Hello there.", "General Kenobi.", "You are a bold one.")


class FakeTranscription:
    """Reads the first audio chunk at once (so decoding errors raise here), then three segments."""

    def __init__(self, chunks: Iterator[np.ndarray], options: TranscriptionOptions) -> None:
        duration = next(chunks).size / SAMPLE_RATE
        self.info = TranscriptionInfo(task=options.task, language=options.language or "en",
                                      language_probability=1.0, duration=duration,
                                      duration_after_vad=duration,
                                      prompt_tokens=len((options.prompt or "").split()))
        self.segments = self._segments(duration / len(SEGMENT_TEXTS))

    @staticmethod
    def _segments(length: float) -> Iterator[Segment]:
        for index, text in enumerate(SEGMENT_TEXTS):
            yield Segment(id=index, seek=0, start=index * length, end=(index + 1) * length, text=f" {text}",
                          tokens=tuple(range(len(text.split()))), temperature=0.0, avg_logprob=-0.2,
                          compression_ratio=1.0, no_speech_prob=0.01, words=None, logprobs=None)


class FakeWhisper:
    """Hears the same three segments in any audio; knows English and French."""

    languages = ("en", "fr")

    def transcribe_stream(self, chunks: Iterator[np.ndarray], options: TranscriptionOptions) -> FakeTranscription:
        if options.language is not None and options.language not in self.languages:
            raise UnsupportedLanguageError(f"Unsupported language {options.language!r}.")
        return FakeTranscription(iter(chunks), options)


# -- embeddings and moderation ----------------------------------------------------------------


class FakeCl100k:
    """OpenAI token ids below 100 read back as the words ``t0`` to ``t99``."""

    n_vocab = 100

    def decode(self, index: int, ids: Sequence[int]) -> str:
        if not all(0 <= token < self.n_vocab for token in ids):
            raise UnknownTokens(index, self.n_vocab)
        return " ".join(f"t{token}" for token in ids)


class FakeMiniLM:
    """Eight dimensions; a word is a token whose id is its length; a vector depends on its ids."""

    dimensions = 8
    max_tokens = 16
    vocab_size = 1000

    def __init__(self) -> None:
        self.openai_tokens: FakeCl100k | None = FakeCl100k()

    def token_ids(self, inputs: Sequence[str] | Sequence[Sequence[int]]) -> list[list[int]]:
        token_ids = []
        for index, item in enumerate(inputs):
            ids = [len(word) for word in item.split()] if isinstance(item, str) else list(item)
            if any(not 0 <= token < self.vocab_size for token in ids):
                raise InvalidTokens(index, self.vocab_size)
            if len(ids) > self.max_tokens:
                raise InputTooLong(index, len(ids), self.max_tokens)
            token_ids.append(ids)
        return token_ids

    def embed(self, inputs: Sequence[Sequence[int]], *, dimensions: int | None = None) -> np.ndarray:
        width = dimensions or self.dimensions
        vectors = np.array([[1.0 + (sum(ids) + column) % 5 for column in range(width)] for ids in inputs],
                           dtype=np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _text_result(score: float) -> ModerationResult:
    scores = {c: score if c == "violence" else 0.01 for c in CATEGORIES}
    return ModerationResult(flagged=score >= 0.5, categories={c: s >= 0.5 for c, s in scores.items()},
                            category_scores=scores, category_applied_input_types={c: ["text"] for c in CATEGORIES})


def _image_result(score: float) -> ModerationResult:
    """As the real engine scores images: only 'sexual' applies to them."""
    scores = {c: score if c == "sexual" else 0.0 for c in CATEGORIES}
    return ModerationResult(flagged=score >= 0.5, categories={c: s >= 0.5 for c, s in scores.items()},
                            category_scores=scores,
                            category_applied_input_types={c: ["image"] if c == "sexual" else [] for c in CATEGORIES})


class FakeModeration:
    """Flags text that says "kill" as violence and the image bytes ``nsfw`` as sexual;
    image bytes starting ``bad`` cannot be decoded. A text's pieces are its words; one over
    ``MAX_WORDS`` is refused. ``scored`` keeps every ``score`` call's pieces; while ``gate`` is
    set to an unset event, ``score`` waits for it."""

    MAX_WORDS = 1000

    def __init__(self) -> None:
        self.scored: list[list[str]] = []
        self.gate: threading.Event | None = None

    def classify(self, texts: Sequence[str]) -> list[ModerationResult]:
        pieces = self.prepare(texts)
        return self.combine(pieces, [self.score([piece for text in pieces for piece in text])])

    def prepare(self, texts: Sequence[str]) -> list[list[str]]:
        for index, text in enumerate(texts):
            if len(text.split()) > self.MAX_WORDS:
                raise InputTooLong(index, len(text.split()), self.MAX_WORDS)
        return [text.split() or [text] for text in texts]

    def score(self, pieces: list[str]) -> np.ndarray:
        self.scored.append(pieces)
        if self.gate is not None:
            self.gate.wait(DEADLINE)
        return np.array([[0.9 if "kill" in piece else 0.01] for piece in pieces]).reshape(-1, 1)

    @staticmethod
    def combine(pieces: Sequence[Sequence[str]], scores: Sequence[np.ndarray]) -> list[ModerationResult]:
        rows = np.vstack(scores)[:, 0] if scores else np.zeros(0)
        results, start = [], 0
        for text_pieces in pieces:
            results.append(_text_result(float(rows[start:start + len(text_pieces)].max())))
            start += len(text_pieces)
        return results

    def classify_images(self, images: Sequence[bytes]) -> list[ModerationResult]:
        for index, image in enumerate(images):
            if image.startswith(b"bad"):
                raise ImageDecodeError(index, "not an image")
        return [_image_result(0.9 if image == b"nsfw" else 0.01) for image in images]


# -- the fixture ---------------------------------------------------------------------------


@dataclass
class Hearth:
    """The real ModelService over a registry of fakes, and the meter services record to."""

    registry: ModelRegistry
    models: ModelService
    meter: RecordingMeter

    def loaded(self, name: str) -> LoadedModel:
        return self.registry._loaded[self.registry.catalog.resolve(name).id]

    def runner(self, name: str) -> ModelRunner:
        return self.loaded(name).runner

    def engine(self, name: str) -> Any:
        return self.loaded(name).engine

    def only_event(self, *, batch: bool = False) -> UsageEvent:
        """The one event recorded, checked to be on the test caller's behalf."""
        assert len(self.meter.events) == 1, self.meter.events
        event = self.meter.events[0]
        assert (event.caller.project_id, event.caller.api_key_id, event.batch) == (
            CALLER.project_id, CALLER.api_key_id, batch)
        return event


@pytest.fixture
def hearth(tmp_path: Path) -> Iterator[Hearth]:
    """Every fake loaded with one worker and room for two waiting online requests."""
    registry = ModelRegistry(Catalog(SPECS), ModelStore(tmp_path), Settings())
    engines = {"fake-llama": FakeLlama(), "fake-kokoro": FakeKokoro(), "fake-whisper": FakeWhisper(),
               "fake-minilm": FakeMiniLM(), "fake-moderation": FakeModeration()}
    for spec in SPECS:
        if spec.id in engines:
            registry._loaded[spec.id] = LoadedModel(spec, engines[spec.id],
                                                    ModelRunner(spec.id, workers=1, queue_depth=2))
    yield Hearth(registry, ModelService(registry), RecordingMeter())
    registry.shutdown()
