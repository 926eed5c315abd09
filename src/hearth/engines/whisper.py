"""Whisper speech-to-text on faster-whisper (CTranslate2).

The engine is synchronous and blocking: the model runner calls it from a worker
thread. A transcription returns its `TranscriptionInfo` at once (language
detection and voice-activity detection run eagerly) and its segments as a lazy
generator, so the caller streams text as each 30-second window is decoded and
stops the work by closing the generator when the client goes away.

Token log-probabilities: faster-whisper reports only per-segment averages, so
when they are asked for, every CTranslate2 decode of the request also returns
its per-step vocabulary logits, and each emitted text token gets
log_softmax(logits)[token] from the very step that chose it. These are the
model's own (temperature 1) probabilities of the tokens it emitted; summed per
decode they equal the score faster-whisper turns into `avg_logprob`.
CTranslate2 returns logits only for greedy or sampled decoding, not beam
search, so with logprobs the temperature-0 pass decodes greedily (beam 1)
instead of with a beam of 5.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
from faster_whisper import WhisperModel
from faster_whisper import transcribe as fw
from faster_whisper.feature_extractor import FeatureExtractor
from faster_whisper.vad import VadOptions

from hearth.engines.whisper_languages import LANGUAGE_NAMES

Task = Literal["transcribe", "translate"]

# Whisper's temperature fallback: retry a window hotter when its decode looks
# like a failure (too repetitive or too improbable).
FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
BEAM_SIZE = 5
BEST_OF = 5
# Whisper's encoder turns every 20 ms of audio into one frame for the decoder.
ENCODER_FRAMES_PER_SECOND = 50


class WhisperOptionError(ValueError):
    """A request option the model cannot honour; the message is safe to show the client."""


class UnsupportedLanguageError(WhisperOptionError):
    pass


class UnsupportedTaskError(WhisperOptionError):
    pass


@dataclass(frozen=True, slots=True)
class VadParams:
    """OpenAI's `server_vad` chunking strategy; the defaults are the spec's."""

    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 200


# `chunking_strategy: "auto"`: faster-whisper's defaults, tuned for files
# rather than live turn-taking (2 s of silence ends speech, 400 ms padding).
AUTO_VAD = VadParams(threshold=0.5, prefix_padding_ms=400, silence_duration_ms=2000)


@dataclass(frozen=True, slots=True)
class TranscriptionOptions:
    task: Task = "transcribe"
    language: str | None = None  # ISO-639-1; None detects it from the first 30 s
    prompt: str | None = None
    temperature: float = 0.0  # 0 runs the fallback ladder, >0 samples at exactly that
    word_timestamps: bool = False
    vad: VadParams | None = None  # None transcribes the audio as a single block
    logprobs: bool = False


@dataclass(frozen=True, slots=True)
class Word:
    word: str
    start: float
    end: float
    probability: float


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    token: str
    logprob: float
    bytes: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Segment:
    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: tuple[int, ...]  # text and timestamp token ids, as OpenAI reports them
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float
    words: tuple[Word, ...] | None  # None unless word timestamps were asked for
    logprobs: tuple[TokenLogprob, ...] | None  # text tokens only; None unless asked for


@dataclass(frozen=True, slots=True)
class TranscriptionInfo:
    task: Task
    language: str  # ISO code: the spoken language, given or detected
    language_probability: float
    duration: float  # seconds of input audio
    duration_after_vad: float  # seconds actually decoded
    prompt_tokens: int

    @property
    def language_name(self) -> str:
        return LANGUAGE_NAMES[self.language]

    @property
    def audio_tokens(self) -> int:
        """Encoder frames of audio the decoder attended to."""
        # Rounding first keeps float noise (186205.00000000003) from adding a frame.
        return math.ceil(round(self.duration_after_vad * ENCODER_FRAMES_PER_SECOND, 6))


@dataclass(frozen=True, slots=True)
class Transcription:
    info: TranscriptionInfo
    segments: Iterator[Segment]  # lazy: decoding happens as it is consumed


class WhisperEngine:
    """One Whisper model, loaded once, transcribing and translating 16 kHz audio."""

    def __init__(
        self,
        model_dir: Path,
        *,
        device: str = "cpu",
        compute_type: str = "int8",
        cpu_threads: int = 0,
        num_workers: int = 1,
    ) -> None:
        if not (Path(model_dir) / "model.bin").is_file():
            # faster-whisper treats a missing directory as a hub name and downloads.
            raise FileNotFoundError(f"no CTranslate2 Whisper model in {model_dir}")
        self._model = WhisperModel(
            str(model_dir),
            device=device,
            compute_type=compute_type,
            cpu_threads=cpu_threads,
            num_workers=num_workers,
            local_files_only=True,
        )
        self._model.feature_extractor = WindowedFeatureExtractor(**self._model.feat_kwargs)

    @property
    def is_multilingual(self) -> bool:
        return self._model.model.is_multilingual

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(self._model.supported_languages)

    def transcribe(self, audio: np.ndarray, options: TranscriptionOptions) -> Transcription:
        """Start transcribing (or translating) 16 kHz mono float32 `audio`."""
        language = self._check_options(options)
        model = self._model
        recorder = None
        if options.logprobs:
            # A per-request shallow copy shares the loaded weights while its
            # decoder calls go through this request's own logits recorder.
            model = copy.copy(self._model)
            recorder = _LogitsRecorder(self._model.model, self._model.hf_tokenizer)
            model.model = recorder
        raw_segments, raw_info = model.transcribe(
            audio,
            task=options.task,
            language=language,
            initial_prompt=options.prompt or None,
            temperature=_temperatures(options.temperature),
            beam_size=1 if options.logprobs else BEAM_SIZE,
            best_of=BEST_OF,
            word_timestamps=options.word_timestamps,
            vad_filter=options.vad is not None,
            vad_parameters=_vad_options(options.vad) if options.vad else None,
        )
        info = TranscriptionInfo(
            task=options.task,
            language=raw_info.language,
            language_probability=raw_info.language_probability,
            duration=raw_info.duration,
            duration_after_vad=raw_info.duration_after_vad,
            prompt_tokens=self._count_prompt_tokens(options.prompt),
        )
        return Transcription(info, _segments(raw_segments, info.duration, recorder))

    def _check_options(self, options: TranscriptionOptions) -> str | None:
        """Validate the options; return the language code to force, if any."""
        if options.task not in ("transcribe", "translate"):
            raise UnsupportedTaskError(f"unknown task {options.task!r}")
        if options.task == "translate" and not self.is_multilingual:
            raise UnsupportedTaskError(
                "This model is English-only and cannot translate; use a multilingual model."
            )
        if not 0.0 <= options.temperature <= 1.0:
            raise WhisperOptionError("temperature must be between 0 and 1")
        if options.language is None:
            return None
        language = options.language.strip().lower()
        if language not in self.languages:
            if language in LANGUAGE_NAMES:
                raise UnsupportedLanguageError(
                    f"This model is English-only and cannot transcribe language {language!r}."
                )
            raise UnsupportedLanguageError(
                f"Unsupported language {options.language!r}: give an ISO-639-1 code "
                "such as 'en', 'es' or 'fr'."
            )
        return language

    def _count_prompt_tokens(self, prompt: str | None) -> int:
        if not prompt:
            return 0
        # faster-whisper conditions on the prompt encoded with a leading space.
        encoding = self._model.hf_tokenizer.encode(" " + prompt.strip(), add_special_tokens=False)
        return len(encoding.ids)


def _temperatures(temperature: float) -> tuple[float, ...]:
    return FALLBACK_TEMPERATURES if temperature == 0 else (temperature,)


def _vad_options(params: VadParams) -> VadOptions:
    return VadOptions(
        threshold=params.threshold,
        speech_pad_ms=params.prefix_padding_ms,
        min_silence_duration_ms=params.silence_duration_ms,
    )


def _segments(
    raw_segments: Iterator[fw.Segment], duration: float, recorder: _LogitsRecorder | None
) -> Iterator[Segment]:
    """Convert faster-whisper's segments to Hearth's, numbered from 0 as OpenAI does.

    Timestamps are rounded to the millisecond, dropping float noise, and clamped
    to the last whole millisecond of audio, as Whisper's final timestamp token
    can round past the end of a clip.
    """
    last_millisecond = math.floor(duration * 1000) / 1000

    def seconds(value: float) -> float:
        return min(round(float(value), 3), last_millisecond)

    for index, raw in enumerate(raw_segments):
        words = None
        if raw.words is not None:
            words = tuple(
                Word(w.word, seconds(w.start), seconds(w.end), float(w.probability))
                for w in raw.words
            )
        yield Segment(
            id=index,
            seek=raw.seek,
            start=seconds(raw.start),
            end=seconds(raw.end),
            text=raw.text,
            tokens=tuple(raw.tokens),
            temperature=float(raw.temperature or 0.0),
            avg_logprob=float(raw.avg_logprob),
            compression_ratio=float(raw.compression_ratio),
            no_speech_prob=float(raw.no_speech_prob),
            words=words,
            logprobs=recorder.logprobs_for(raw) if recorder else None,
        )


class _LogitsRecorder:
    """Stands in for the CTranslate2 Whisper model during one request.

    Every decode is asked for its per-step logits; the log-probabilities of the
    tokens it chose are kept per temperature for the current 30-second window
    (each fallback retry reuses the window's encoder output and has its own
    temperature), so an emitted segment finds the decode it came from.
    """

    def __init__(self, model: Any, hf_tokenizer: Any) -> None:
        self._model = model
        self._tokenizer = hf_tokenizer
        self._eot = hf_tokenizer.token_to_id("<|endoftext|>")
        self._window: object | None = None
        self._decodes: dict[float, tuple[list[int], np.ndarray]] = {}
        self._cursor: dict[float, int] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def generate(self, features: Any, prompts: Any, **kwargs: Any) -> list[Any]:
        if features is not self._window:
            self._window, self._decodes, self._cursor = features, {}, {}
        results = self._model.generate(features, prompts, return_logits_vocab=True, **kwargs)
        best = results[0]  # one prompt per call; hypothesis 0 is the one used
        tokens = best.sequences_ids[0]
        # faster-whisper passes a sampling temperature only to its retries above 0.
        temperature = kwargs.get("sampling_temperature", 0.0)
        self._decodes[temperature] = (tokens, _chosen_logprobs(best.logits[0], tokens))
        return results

    def logprobs_for(self, segment: fw.Segment) -> tuple[TokenLogprob, ...]:
        temperature = float(segment.temperature or 0.0)
        tokens, logprobs = self._decodes[temperature]
        # Segments are consecutive slices of their decode's tokens.
        start = _find_slice(tokens, segment.tokens, self._cursor.get(temperature, 0))
        self._cursor[temperature] = start + len(segment.tokens)
        return tuple(
            self._token_logprob(token, float(logprobs[start + offset]))
            for offset, token in enumerate(segment.tokens)
            if token < self._eot  # text tokens; timestamps and specials are not text
        )

    def _token_logprob(self, token: int, logprob: float) -> TokenLogprob:
        raw = bytes(_byte_decoder()[char] for char in self._tokenizer.id_to_token(token))
        return TokenLogprob(raw.decode("utf-8", errors="replace"), logprob, tuple(raw))


def _chosen_logprobs(step_logits: Sequence[Any], tokens: Sequence[int]) -> np.ndarray:
    """log_softmax of each step's logits, taken at the token that step emitted."""
    if not tokens:
        return np.empty(0, dtype=np.float32)
    # One step per emitted token, plus the final end-of-text step, unused here.
    logits = np.stack([np.asarray(step) for step in step_logits[: len(tokens)]])
    peak = logits.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(logits - peak).sum(axis=1)) + peak[:, 0]
    return logits[np.arange(len(tokens)), tokens] - log_norm


def _find_slice(haystack: Sequence[int], needle: Sequence[int], start: int) -> int:
    length = len(needle)
    for index in range(start, len(haystack) - length + 1):
        if list(haystack[index : index + length]) == list(needle):
            return index
    raise LookupError("segment tokens not found in their decode")


@cache
def _byte_decoder() -> dict[str, int]:
    """Inverse of GPT-2's byte-to-printable-character map, which Whisper's BPE uses."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    characters = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            characters.append(256 + extra)
            extra += 1
    return {chr(char): byte for byte, char in zip(printable, characters)}


class WindowedFeatureExtractor(FeatureExtractor):
    """Whisper's log-mel spectrogram computed 30 seconds at a time.

    faster-whisper's extractor takes the STFT of the whole recording at once,
    whose complex intermediates cost about 50 bytes per sample: 1.5 GB for 30
    minutes of audio. Every STFT frame depends only on its own 400 samples, so
    computing the frames a window at a time gives the same spectrogram while
    holding one window's intermediates; only the final clamp needs the global
    maximum, applied once every window is done.
    """

    WINDOW_FRAMES = 3000

    def __call__(self, waveform: np.ndarray, padding: int = 160,
                 chunk_length: int | None = None) -> np.ndarray:
        if chunk_length is not None:
            self.n_samples = chunk_length * self.sampling_rate
            self.nb_max_frames = self.n_samples // self.hop_length
        waveform = np.pad(waveform.astype(np.float32, copy=False), (0, padding))
        # The base class drops the STFT's last frame; so does this.
        frames = len(waveform) // self.hop_length
        if frames <= self.WINDOW_FRAMES:
            return super().__call__(waveform, padding=0)
        window = np.hanning(self.n_fft + 1)[:-1].astype("float32")
        log_spec = np.empty((self.mel_filters.shape[0], frames), dtype=np.float32)
        for first in range(0, frames, self.WINDOW_FRAMES):
            last = min(first + self.WINDOW_FRAMES, frames)
            samples = self._centered_slice(waveform, first * self.hop_length,
                                           (last - 1) * self.hop_length + self.n_fft)
            stft = self.stft(samples, self.n_fft, self.hop_length, window=window,
                             center=False, return_complex=True).astype("complex64")
            mel_spec = self.mel_filters @ (np.abs(stft) ** 2)
            log_spec[:, first:last] = np.log10(np.clip(mel_spec, a_min=1e-10, a_max=None))
        np.maximum(log_spec, log_spec.max() - 8.0, out=log_spec)
        log_spec += 4.0
        log_spec /= 4.0
        return log_spec

    def _centered_slice(self, waveform: np.ndarray, start: int, stop: int) -> np.ndarray:
        """Samples [start, stop) of the waveform reflect-padded by n_fft/2 on both sides,
        as the whole-signal STFT centres its frames, without padding the whole signal."""
        pad = self.n_fft // 2
        low, high = start - pad, stop - pad
        piece = waveform[max(low, 0):min(high, len(waveform))]
        left, right = max(0, -low), max(0, high - len(waveform))
        return np.pad(piece, (left, right), mode="reflect") if left or right else piece
