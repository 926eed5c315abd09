"""Kokoro-82M text-to-speech over onnxruntime.

The engine is synchronous: the model runner calls it from a worker thread and
pulls one chunk of audio per sentence, so it can stream each chunk as soon as it
exists and stop between chunks when the client goes away.

On `instructions` (gpt-4o-mini-tts): Kokoro has no way to follow a free-form
style prompt, and guessing at one ("slow", "cheerful") would act on words the
caller never meant as commands. The speech endpoint accepts `instructions` and
does not apply them; the voice and `speed` are the controls this engine has.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import onnxruntime as ort
from kokoro_onnx.tokenizer import Tokenizer

MODEL_FILE = "kokoro-v1.0.int8.onnx"
VOICES_DIR = "voices"
SAMPLE_RATE = 24_000

# The graph attends over 512 tokens, two of which are the padding at each end;
# a voice file holds one style row per possible length, so the two agree.
MAX_TOKENS = 510
# The longest first piece: a few words, which synthesize in well under a second.
FIRST_PIECE_TOKENS = 16
STYLE_DIM = 256

# OpenAI's voices, each on a distinct English Kokoro voice of a similar kind.
OPENAI_VOICES: dict[str, str] = {
    "alloy": "af_alloy",
    "ash": "am_fenrir",
    "ballad": "bm_george",
    "coral": "af_bella",
    "echo": "am_echo",
    "fable": "bm_fable",
    "onyx": "am_onyx",
    "nova": "af_nova",
    "sage": "af_sarah",
    "shimmer": "af_aoede",
    "verse": "am_puck",
    "marin": "af_heart",
    "cedar": "am_michael",
}

# A voice's first letter names the language it was trained on; the values are
# the espeak-ng language codes that phonemize for it.
LANGUAGES: dict[str, str] = {
    "a": "en-us",
    "b": "en-gb",
    "e": "es",
    "f": "fr-fr",
    "h": "hi",
    "i": "it",
    "j": "ja",
    "p": "pt-br",
    "z": "cmn",
}

MIN_SPEED, MAX_SPEED = 0.25, 4.0
# Within this range the model's own speed input scales duration by 1/speed
# (measured within 2%). Faster, its per-phoneme durations round to whole frames
# and a sentence asked for at 2x comes out at 1.77x, at 4x at 2x; slower than
# 0.5 is outside what kokoro-onnx supports. The rest is a pitch-keeping stretch.
NATIVE_SPEEDS = (0.5, 1.0)

# Silence between pieces, by how the piece ended; the model's own edge silence
# is trimmed so joins are the same length whatever the model produced.
SENTENCE_PAUSE = 0.25
CLAUSE_PAUSE = 0.1
SENTENCE_MARKS = ".!?…。！？"
CLAUSE_MARKS = ",;:，、；：—–"

# Sentences end at a mark followed by space (CJK marks need none) or at a blank
# line; a single newline is a wrapped line and stays inside its sentence.
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|(?<=[。！？])\s*|\n\s*\n")
# Inside an over-long phoneme string: clause marks, then words, least
# disruptive first.
_PHONEME_BREAKS = (
    re.compile(rf"(?<=[{re.escape(SENTENCE_MARKS + CLAUSE_MARKS)}])\s+"),
    re.compile(r"\s+"),
)
# espeak marks words it reads in another language as "(en)...(ja)"
_LANGUAGE_FLAG = re.compile(r"\([a-z-]+\)")


class UnknownVoice(ValueError):
    """A voice name that is neither an OpenAI voice nor a Kokoro voice."""

    def __init__(self, name: str, valid: list[str]) -> None:
        super().__init__(f"Unknown voice {name!r}. Valid voices: {', '.join(valid)}")
        self.name = name
        self.valid = valid


class NothingToSay(ValueError):
    """Text with nothing speakable in it, such as only punctuation or emoji."""

    def __init__(self, text: str) -> None:
        super().__init__(f"input has nothing to speak: {text[:50]!r}")


@dataclass(frozen=True)
class Utterance:
    """Text checked and phonemized for one voice, ready to synthesize."""

    pieces: tuple[str, ...]  # phonemes, each within the model's window
    voice: str  # native voice name
    speed: float
    tokens: int  # phoneme tokens the model will read


class KokoroEngine:
    """Kokoro-82M v1.0 (int8 ONNX) with the voices in `model_dir/voices/*.bin`."""

    sample_rate = SAMPLE_RATE

    def __init__(self, model_dir: Path, *, threads: int | None = None,
                 providers: list[str] | None = None) -> None:
        model_dir = Path(model_dir)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self._session = ort.InferenceSession(
            str(model_dir / MODEL_FILE), options, providers=providers or ["CPUExecutionProvider"]
        )
        self._tokenizer = Tokenizer()
        self._styles = {
            path.stem: _load_style(path) for path in sorted((model_dir / VOICES_DIR).glob("*.bin"))
        }
        if not self._styles:
            raise FileNotFoundError(f"no Kokoro voices in {model_dir / VOICES_DIR}")

    def voices(self) -> list[str]:
        """The native Kokoro voice names, sorted."""
        return list(self._styles)

    def resolve_voice(self, name: str) -> str:
        """The native voice for an OpenAI or native voice name."""
        native = OPENAI_VOICES.get(name, name)
        if native not in self._styles:
            raise UnknownVoice(name, [*OPENAI_VOICES, *self._styles])
        return native

    @staticmethod
    def language_of(voice: str) -> str:
        """The espeak-ng language a native voice speaks, from its prefix."""
        return LANGUAGES[voice[0]]

    def prepare(self, text: str, voice: str, speed: float = 1.0) -> Utterance:
        """Check the arguments and phonemize `text` into pieces the model can take.

        Every error (UnknownVoice, NothingToSay, a bad speed) is raised here,
        before any audio exists; `speak` then synthesizes as it is iterated.
        """
        if not MIN_SPEED <= speed <= MAX_SPEED:
            raise ValueError(f"speed must be between {MIN_SPEED} and {MAX_SPEED}, got {speed}")
        native = self.resolve_voice(voice)
        pieces = self._pieces(text, self.language_of(native))
        if not pieces:
            raise NothingToSay(text)
        # Audio starts leaving once the first piece is synthesized, and synthesis
        # time grows with its length: when more follows, a long first piece gives
        # up its opening words as a piece of their own. A lone or short piece is
        # left whole: little to gain, and its flow (and intelligibility) to lose.
        if len(pieces) > 1 and len(pieces[0]) > 2 * FIRST_PIECE_TOKENS:
            pieces[:1] = _split_head(pieces[0], FIRST_PIECE_TOKENS)
        tokens = sum(len(self._tokenizer.tokenize(piece)) for piece in pieces)
        return Utterance(tuple(pieces), native, speed, tokens)

    def speak(self, utterance: Utterance) -> Iterator[np.ndarray]:
        """Synthesize a prepared utterance: float32 mono chunks at 24 kHz, one per sentence.

        A sentence too long for the model's window is cut at clauses, then
        words; each chunk but the last ends with the pause its punctuation
        calls for.
        """
        return self._speak(list(utterance.pieces), self._styles[utterance.voice], utterance.speed)

    def synthesize(self, text: str, voice: str, speed: float = 1.0) -> Iterator[np.ndarray]:
        """Speak all of `text`: `prepare` then `speak`. `speed` (0.25 to 4.0) divides the duration."""
        return self.speak(self.prepare(text, voice, speed))

    def _speak(self, pieces: list[str], style: np.ndarray, speed: float) -> Iterator[np.ndarray]:
        native_speed = min(max(speed, NATIVE_SPEEDS[0]), NATIVE_SPEEDS[1])
        tempo = speed / native_speed
        for index, phonemes in enumerate(pieces):
            audio = _trim_silence(self._infer(phonemes, style, native_speed))
            if not math.isclose(tempo, 1.0):
                audio = _change_tempo(audio, tempo)
            if index < len(pieces) - 1:
                audio = _pad(audio, _pause_after(phonemes) / speed)
            yield audio

    def _pieces(self, text: str, language: str) -> list[str]:
        """Phonemes for each piece of `text`, every one within the model's window."""
        pieces: list[str] = []
        for sentence in _SENTENCE_END.split(text):
            phonemes = self._phonemize(sentence, language)
            # A "sentence" of bare punctuation ("...") has nothing to say
            if any(symbol.isalpha() for symbol in phonemes):
                pieces += _split_phonemes(phonemes, MAX_TOKENS)
        return pieces

    def _phonemize(self, text: str, language: str) -> str:
        phonemes = self._tokenizer.phonemize(" ".join(text.split()), language)
        return " ".join(_LANGUAGE_FLAG.sub(" ", phonemes).split())

    def _infer(self, phonemes: str, style: np.ndarray, speed: float) -> np.ndarray:
        # tokenize() raises past 510 phonemes rather than let the model
        # truncate: the last guard against silently dropped speech
        tokens = self._tokenizer.tokenize(phonemes)
        outputs = self._session.run(
            None,
            {
                "tokens": np.array([[0, *tokens, 0]], dtype=np.int64),
                "style": style[len(tokens) - 1],
                "speed": np.array([speed], dtype=np.float32),
            },
        )
        return np.asarray(outputs[0], dtype=np.float32).ravel()


def _load_style(path: Path) -> np.ndarray:
    """A voice file: raw little-endian float32, one style row per token count."""
    style = np.fromfile(path, dtype="<f4")
    if style.size != MAX_TOKENS * STYLE_DIM:
        raise ValueError(f"{path} is not a Kokoro voice ({style.size} floats)")
    return style.reshape(MAX_TOKENS, 1, STYLE_DIM)


def _split_phonemes(phonemes: str, limit: int) -> list[str]:
    """Cut `phonemes` into pieces of at most `limit` at the gentlest boundaries.

    The pieces are balanced rather than filled to the limit: a short remnant
    is spoken at a different pace and loudness than its neighbours.
    """
    atoms = list(_atoms(phonemes, limit, 0))
    if len(atoms) <= 1:
        return atoms
    fewest = len(_pack(atoms, limit))
    low, high = max(map(len, atoms)), limit
    while low < high:
        middle = (low + high) // 2
        if len(_pack(atoms, middle)) <= fewest:
            high = middle
        else:
            low = middle + 1
    return _pack(atoms, low)


def _atoms(phonemes: str, limit: int, level: int) -> Iterator[str]:
    """Pieces of `phonemes` no longer than `limit`, broken no finer than needed."""
    if len(phonemes) <= limit:
        yield phonemes
        return
    for depth in range(level, len(_PHONEME_BREAKS)):
        parts = [part for part in _PHONEME_BREAKS[depth].split(phonemes) if part]
        if len(parts) > 1:
            for part in parts:
                yield from _atoms(part, limit, depth + 1)
            return
    # One unbroken run longer than the window: slice it rather than lose the tail
    for start in range(0, len(phonemes), limit):
        yield phonemes[start : start + limit]


def _split_head(phonemes: str, limit: int) -> list[str]:
    """Cut a short head off `phonemes` at its last clause mark, else word, within `limit`.

    The rest stays one piece, so only the opening phrase is spoken on its own.
    """
    if len(phonemes) <= limit:
        return [phonemes]
    window = phonemes[: limit + 1]
    for pattern in _PHONEME_BREAKS:
        cuts = [match.start() for match in pattern.finditer(window) if match.start() > 0]
        if cuts:
            return [phonemes[: cuts[-1]], phonemes[cuts[-1] :].lstrip()]
    return [phonemes]


def _pack(atoms: list[str], limit: int) -> list[str]:
    """Join consecutive atoms with spaces into pieces of at most `limit`."""
    pieces = [atoms[0]]
    for atom in atoms[1:]:
        if len(pieces[-1]) + 1 + len(atom) <= limit:
            pieces[-1] += " " + atom
        else:
            pieces.append(atom)
    return pieces


def _pause_after(phonemes: str) -> float:
    mark = phonemes[-1]
    if mark in SENTENCE_MARKS:
        return SENTENCE_PAUSE
    if mark in CLAUSE_MARKS:
        return CLAUSE_PAUSE
    return 0.0


def _trim_silence(audio: np.ndarray, top_db: float = 60.0, frame: int = 480) -> np.ndarray:
    """Cut the leading and trailing 20 ms frames quieter than `top_db` below the loudest."""
    frames = len(audio) // frame
    if frames == 0:
        return audio
    rms = np.sqrt(np.mean(audio[: frames * frame].reshape(frames, frame) ** 2, axis=1))
    loud = np.flatnonzero(rms > rms.max() * 10 ** (-top_db / 20))
    if loud.size == 0:
        return audio[:0]
    return audio[loud[0] * frame : (loud[-1] + 1) * frame]


def _pad(audio: np.ndarray, seconds: float) -> np.ndarray:
    return np.concatenate([audio, np.zeros(round(seconds * SAMPLE_RATE), np.float32)])


def _change_tempo(audio: np.ndarray, tempo: float) -> np.ndarray:
    """Play `audio` `tempo` times as fast at the same pitch, with ffmpeg's atempo.

    atempo takes 0.5 to 100 in one stage, which covers every tempo the native
    speed range leaves over (0.5 to 4).
    """
    graph = av.filter.Graph()
    source = graph.add_abuffer(format="flt", sample_rate=SAMPLE_RATE, layout="mono")
    stretch = graph.add("atempo", f"{tempo}")
    sink = graph.add("abuffersink")
    source.link_to(stretch)
    stretch.link_to(sink)
    graph.configure()

    frame = av.AudioFrame.from_ndarray(audio[np.newaxis, :], format="flt", layout="mono")
    frame.sample_rate = SAMPLE_RATE
    graph.push(frame)
    graph.push(None)
    out: list[np.ndarray] = []
    while True:
        try:
            out.append(graph.pull().to_ndarray().ravel())
        except (av.BlockingIOError, av.EOFError):
            break
    return np.concatenate(out) if out else audio[:0]
