"""Whisper speech-to-text on faster-whisper (CTranslate2).

The engine is synchronous and blocking: the model runner calls it from a worker
thread. A transcription returns its `TranscriptionInfo` at once (language
detection and voice-activity detection run eagerly) and its segments as a lazy
generator, so the caller streams text as each 30-second window is decoded and
stops the work by closing the generator when the client goes away.

Long audio: faster-whisper needs its whole input at once (samples, features,
VAD), so memory would grow with the recording. Audio therefore arrives as
chunks (from the decoder) and is transcribed a window of WINDOW_SECONDS at a
time, each window cut at its quietest half second so no word is split. Across
windows the transcription carries what faster-whisper carries across its own
30-second steps: the language (detected on the first window), the previous
text as the decoder's prompt, and times, seeks and segment ids, offset to the
whole recording. Audio shorter than a window is one window: nothing changes.

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
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import cache, partial
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
SAMPLE_RATE = 16_000  # Whisper's input
HOP_LENGTH = 160  # samples per mel frame, the unit of a segment's `seek`
# faster-whisper's default: a window decoded this hot stops conditioning what follows.
PROMPT_RESET_TEMPERATURE = 0.5

# Long audio is transcribed this much at a time: memory holds one window's
# samples and features (about 60 MB for 10 minutes), whatever the duration.
WINDOW_SECONDS = 600.0
# A window ends in the quietest QUIET_FRAME_SECONDS of its last
# QUIET_SEARCH_SECONDS (at most half the window), where no word is spoken.
QUIET_SEARCH_SECONDS = 30.0
QUIET_FRAME_SECONDS = 0.5


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


# Transcribes one window: (samples, language or None to detect, prompt text or tokens).
WindowDecoder = Callable[[np.ndarray, str | None, str | list[int] | None],
                         tuple[Iterator[fw.Segment], fw.TranscriptionInfo]]


@dataclass(frozen=True, slots=True)
class _Placement:
    """Where a window sits in the whole recording."""

    first_id: int
    offset: int  # samples before the window
    duration: float  # seconds in the window


class Transcription:
    """A transcription under way, window by window.

    `info` is ready at once. Its `duration` and `duration_after_vad` are the
    totals of the windows begun so far: final once `segments` is exhausted,
    and from the start for audio shorter than one window.
    """

    def __init__(self, decode: WindowDecoder, windows: Iterator[np.ndarray], *,
                 options: TranscriptionOptions, language: str | None,
                 prompt_tokens: Sequence[int], recorder: _LogitsRecorder | None,
                 context_tokens: int) -> None:
        self._decode, self._windows, self._recorder = decode, windows, recorder
        # What the decoder is conditioned on across windows, as faster-whisper
        # conditions its own 30-second steps: the prompt, then the text so far.
        self._context: deque[int] = deque(prompt_tokens, maxlen=context_tokens)
        first = next(windows)
        raw_segments, raw_info = decode(first, language, options.prompt or None)
        self._samples = first.size  # in the windows begun so far
        self.info = TranscriptionInfo(
            task=options.task,
            language=raw_info.language,
            language_probability=raw_info.language_probability,
            duration=raw_info.duration,
            duration_after_vad=raw_info.duration_after_vad,
            prompt_tokens=len(prompt_tokens),
        )
        self.segments: Iterator[Segment] = self._all_segments(
            raw_segments, _Placement(first_id=0, offset=0, duration=raw_info.duration))

    def _all_segments(self, raw_segments: Iterator[fw.Segment],
                      placement: _Placement) -> Iterator[Segment]:
        last_id = yield from self._placed(raw_segments, placement)
        for window in self._windows:
            placement = _Placement(last_id + 1, self._samples, window.size / SAMPLE_RATE)
            raw_segments, raw_info = self._decode(window, self.info.language,
                                                  list(self._context) or None)
            self._samples += window.size
            del window  # its features are computed: free the samples before the next window decodes
            self.info = replace(
                self.info, duration=self._samples / SAMPLE_RATE,
                duration_after_vad=self.info.duration_after_vad + raw_info.duration_after_vad)
            last_id = yield from self._placed(raw_segments, placement)

    def _placed(self, raw_segments: Iterator[fw.Segment],
                placement: _Placement) -> Generator[Segment, None, int]:
        """Yield one window's segments placed in the recording; return the last id."""
        last_id = placement.first_id - 1
        for segment in _segments(raw_segments, placement, self._recorder):
            self._remember(segment)
            last_id = segment.id
            yield segment
        return last_id

    def _remember(self, segment: Segment) -> None:
        if segment.temperature > PROMPT_RESET_TEMPERATURE:
            self._context.clear()
        else:
            self._context.extend(segment.tokens)


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
        return self.transcribe_stream([audio], options)

    def transcribe_stream(self, chunks: Iterable[np.ndarray],
                          options: TranscriptionOptions) -> Transcription:
        """Start transcribing 16 kHz mono float32 audio given as chunks of any length.

        Chunks are consumed a window at a time as segments are, so the whole
        recording is never held; the first window is read (and its errors
        raised) before this returns.
        """
        language = self._check_options(options)
        model = self._model
        recorder = None
        if options.logprobs:
            # A per-request shallow copy shares the loaded weights while its
            # decoder calls go through this request's own logits recorder.
            model = copy.copy(self._model)
            recorder = _LogitsRecorder(self._model.model, self._model.hf_tokenizer)
            model.model = recorder
        return Transcription(
            partial(_decode_window, model, options),
            quiet_windows(chunks, window_samples=round(WINDOW_SECONDS * SAMPLE_RATE)),
            options=options,
            language=language,
            prompt_tokens=self._prompt_tokens(options.prompt),
            recorder=recorder,
            # faster-whisper keeps only this much of the previous text in a prompt.
            context_tokens=self._model.max_length // 2 - 1,
        )

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

    def _prompt_tokens(self, prompt: str | None) -> list[int]:
        if not prompt:
            return []
        # faster-whisper conditions on the prompt encoded with a leading space.
        return self._model.hf_tokenizer.encode(" " + prompt.strip(), add_special_tokens=False).ids


def _decode_window(model: WhisperModel, options: TranscriptionOptions, audio: np.ndarray,
                   language: str | None, prompt: str | list[int] | None,
                   ) -> tuple[Iterator[fw.Segment], fw.TranscriptionInfo]:
    return model.transcribe(
        audio,
        task=options.task,
        language=language,
        initial_prompt=prompt,
        temperature=_temperatures(options.temperature),
        beam_size=1 if options.logprobs else BEAM_SIZE,
        best_of=BEST_OF,
        prompt_reset_on_temperature=PROMPT_RESET_TEMPERATURE,
        word_timestamps=options.word_timestamps,
        vad_filter=options.vad is not None,
        vad_parameters=_vad_options(options.vad) if options.vad else None,
    )


def quiet_windows(chunks: Iterable[np.ndarray], *, window_samples: int) -> Iterator[np.ndarray]:
    """Regroup audio chunks into windows of at most `window_samples`.

    A window is cut only when more audio follows, in the middle of the quietest
    frame of its tail; the rest opens the next window. Always yields at least
    one window (empty for empty input).
    """
    frame = round(QUIET_FRAME_SECONDS * SAMPLE_RATE)
    # Whole frames, and at most half a window, so every window keeps at least half.
    search = frame * int(min(QUIET_SEARCH_SECONDS * SAMPLE_RATE, window_samples / 2) // frame)
    if search < frame:
        raise ValueError(f"a window must hold at least two {QUIET_FRAME_SECONDS} s frames")
    pending: list[np.ndarray] = []
    size = 0
    for chunk in chunks:
        pending.append(chunk)
        size += chunk.size
        while size > window_samples:
            joined = np.concatenate(pending)
            cut = _quietest_point(joined[:window_samples], search, frame)
            rest = joined[cut:].copy()  # a copy, so the yielded window alone owns `joined`
            yield joined[:cut]
            pending, size = [rest], rest.size
    yield np.concatenate(pending) if pending else np.empty(0, dtype=np.float32)


def _quietest_point(window: np.ndarray, search: int, frame: int) -> int:
    """The middle of the lowest-energy `frame` among the last `search` samples of `window`."""
    start = window.size - search
    frames = window[start:].reshape(-1, frame)
    energy = np.einsum("ij,ij->i", frames, frames)
    return start + int(np.argmin(energy)) * frame + frame // 2


def _temperatures(temperature: float) -> tuple[float, ...]:
    return FALLBACK_TEMPERATURES if temperature == 0 else (temperature,)


def _vad_options(params: VadParams) -> VadOptions:
    return VadOptions(
        threshold=params.threshold,
        speech_pad_ms=params.prefix_padding_ms,
        min_silence_duration_ms=params.silence_duration_ms,
    )


def _segments(
    raw_segments: Iterator[fw.Segment], placement: _Placement, recorder: _LogitsRecorder | None
) -> Iterator[Segment]:
    """Convert one window's faster-whisper segments to Hearth's, placed in the recording.

    Ids continue from `placement.first_id` (0 for the first window, as OpenAI
    numbers them). Timestamps are rounded to the millisecond, dropping float
    noise, and clamped to the window's last whole millisecond, as Whisper's
    final timestamp token can round past the end of a clip.
    """
    last_millisecond = math.floor(placement.duration * 1000) / 1000
    offset = placement.offset / SAMPLE_RATE

    def seconds(value: float) -> float:
        return round(offset + min(round(float(value), 3), last_millisecond), 3)

    for index, raw in enumerate(raw_segments, start=placement.first_id):
        words = None
        if raw.words is not None:
            words = tuple(
                Word(w.word, seconds(w.start), seconds(w.end), float(w.probability))
                for w in raw.words
            )
        yield Segment(
            id=index,
            seek=raw.seek + placement.offset // HOP_LENGTH,
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
