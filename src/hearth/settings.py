"""Runtime configuration, read from ``HEARTH_*`` environment variables.

Every setting has an embedded default so ``hearth serve`` works on a fresh
machine with no configuration at all: SQLite and blobs under the data
directory, models under the models directory, CPU inference.
"""

from __future__ import annotations

import json
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from platformdirs import user_data_path
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MiB = 1024 * 1024


class AuthMode(StrEnum):
    enabled = "enabled"
    disabled = "disabled"


def _default_data_dir() -> Path:
    return user_data_path("hearth", appauthor=False)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HEARTH_", env_file=None, extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8000

    # Where state lives: the SQLite database, blobs and the first-run key file.
    data_dir: Path = Field(default_factory=_default_data_dir)
    # Where pulled model files live; shared by every data directory on the host.
    models_dir: Path | None = None
    # SQLAlchemy URL; empty means SQLite inside data_dir.
    database_url: str = ""

    auth: AuthMode = AuthMode.enabled

    # Models loaded at start-up (and pulled on first start when missing).
    default_models: list[str] = [
        "kokoro-82m", "whisper-base", "qwen2.5-coder-0.5b", "all-minilm-l6-v2", "moderation-local",
    ]
    # Pull missing default models when the server starts.
    pull_on_start: bool = True
    # Load the default models at start; otherwise every model loads on its first request.
    preload_models: bool = True
    # The model each kind's OpenAI names (gpt-4o-mini, tts-1, whisper-1, text-embedding-3-small...)
    # mean; it replaces that kind's entry in default_models. Unset: the built-in catalog's choice.
    default_chat_model: str | None = None
    default_speech_model: str | None = None
    default_transcription_model: str | None = None
    default_embedding_model: str | None = None
    # More names for models, overriding every other alias: "gpt-4o=qwen2.5-coder-1.5b,whisper-1=whisper-tiny.en"
    # (or a JSON object). The user catalog (<data_dir>/catalog.toml) may hold an [aliases] table too.
    aliases: Annotated[dict[str, str], NoDecode] = {}
    # Load options per model id, over its catalog entry's `options`: n_ctx (context length per request),
    # n_parallel (slots), threads, n_gpu_layers, memory_mib (the budget's estimate), e.g.
    # HEARTH_MODEL_OPTIONS='{"qwen2.5-coder-1.5b": {"n_ctx": 4096, "n_parallel": 2}}'.
    model_options: dict[str, dict[str, Any]] = {}
    # A loaded model nobody has used for this long is unloaded (0: never).
    model_idle_unload_seconds: float = 0
    # Host memory (MiB) loaded models may take together, by their estimate; before loading another,
    # the least recently used idle models are unloaded to make room (0: no budget).
    model_memory_budget_mib: int = 0
    # The same for GPU memory, for the models HEARTH_DEVICE puts on a GPU (0: no budget).
    model_gpu_memory_budget_mib: int = 0
    # Where inference runs: `auto` picks an NVIDIA GPU when one is present and usable (and says so at
    # start), `cpu` never uses one, `cuda` requires one.
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # The model hub `hearth models pull hf:OWNER/REPO` resolves against (Hugging Face's HTTP API);
    # unset: $HF_ENDPOINT, else the public hub.
    hub_url: str | None = None

    # Largest JSON request body; multipart routes have their own limits.
    max_json_body_bytes: int = 8 * MiB
    max_audio_upload_bytes: int = 25 * MiB

    # Requests waiting for one model beyond this are refused with 429.
    queue_depth: int = 64
    # Threads given to each model's inference runtime; 0 lets the runtime decide.
    inference_threads: int = 0
    # Host memory each chat model may keep finished prompts in, to reuse their prefixes.
    llm_prompt_cache_mib: int = 256

    # Files and Uploads: size limits the API documents, enforced while streaming.
    max_file_bytes: int = 512 * MiB
    max_upload_part_bytes: int = 64 * MiB
    max_upload_bytes: int = 8 * 1024 * MiB
    # An Upload accepts parts for this long after it is created.
    upload_expiry_seconds: int = 3600
    # How often expired Uploads and Files are cleaned away.
    sweep_interval_seconds: float = 60.0

    # Background jobs: `hearth serve` runs a worker unless told not to (then run `hearth worker`).
    run_worker: bool = True
    # Jobs one worker runs at once.
    job_concurrency: int = 2
    # A job whose worker stops heartbeating for this long is claimed again by another.
    job_lease_seconds: float = 30.0
    # Fine-tuning jobs one process trains at once (each takes the cores it is given), and their
    # threads (0: inference_threads, else every core).
    fine_tuning_concurrency: int = 1
    fine_tuning_threads: int = 0

    # Vector stores: fuse a full-text (BM25) ranking with the vectors' (reciprocal rank). Off: on the
    # benchmark's question set it changed no result (docs/benchmarks.md).
    vector_store_hybrid_search: bool = False

    # Where file contents live: a directory under data_dir, or any S3-compatible
    # store (credentials may also come from the standard AWS variables).
    blob_store: Literal["local", "s3"] = "local"
    s3_endpoint_url: str | None = None
    s3_bucket: str = "hearth"
    s3_region: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None

    log_level: str = "info"
    # `text` for people, `json` for log collectors: one object a line with the request id and the
    # caller's project (see hearth/logs.py).
    log_format: Literal["text", "json"] = "text"
    # On SIGTERM or SIGINT the server stops accepting connections and lets requests in flight
    # finish for up to this long, then cancels what is left and hands its running jobs back.
    shutdown_timeout_seconds: int = 30

    # Web origins allowed to call the API from a browser (CORS), e.g. ["http://localhost:3000"];
    # none by default, ["*"] for any.
    cors_origins: list[str] = []

    # Batches: lines one process runs at once over all its batches (llama.cpp answers 4 side by
    # side), and how long a batch may run: the API's 24 hours; shorten it only to test or operate.
    batch_line_concurrency: int = 4
    batch_completion_window_seconds: int = 24 * 3600

    # Assistants: how long a run waits in requires_action for tool outputs before it expires
    # (the API's 10 minutes; shorten it only to test or operate).
    assistants_requires_action_seconds: int = 600

    # The code interpreter's sandbox (bubblewrap): per run of code, wall-clock and CPU seconds, memory
    # (address space) of each process, processes; runs at once per server process. As root, each
    # concurrent run gets its own unprivileged uid from sandbox_uid_base on.
    sandbox_wall_seconds: float = 60.0
    sandbox_cpu_seconds: int = 30
    sandbox_memory_mb: int = 1024
    sandbox_processes: int = 8
    sandbox_slots: int = 2
    sandbox_uid_base: int = 60001

    # Rate limits: counters live in this process unless a Redis URL is given (redis://host:6379/0),
    # which every server process then shares. The defaults apply to every project and model an
    # administrator has not set limits for; null is no limit. A process re-reads a project's
    # limits at most this often.
    redis_url: str | None = None
    default_requests_per_minute: int = 10_000
    default_tokens_per_minute: int = 10_000_000
    default_requests_per_day: int | None = None
    default_images_per_minute: int | None = None
    rate_limit_cache_seconds: float = 5.0
    # The Costs API's price table: model (as the Usage API names it) -> unit -> US dollars.
    # Token and character units are priced per million, `seconds` per minute of audio, `images`
    # per image, `sessions` per session, `bytes` per GiB. Local models cost nothing by default.
    # Example: HEARTH_PRICES='{"gpt-4o-mini": {"input_tokens": 0.15, "output_tokens": 0.6}}'
    prices: dict[str, dict[str, float]] = {}
    # How long an invitation to the organization can be accepted.
    invite_expiry_seconds: int = 7 * 24 * 3600

    # Images: `url` answers are signed links that stop working after this long (the API's hour);
    # the signing key is HEARTH_IMAGE_URL_SECRET, else a random one kept in the data directory.
    image_url_ttl_seconds: int = 3600
    image_url_secret: str | None = None
    # Picture requests that may wait for one image model beyond the one it paints; more get a 429.
    image_queue_depth: int = 8
    # Largest image edit or variation request (up to 16 images for the GPT image models).
    max_image_request_bytes: int = 64 * MiB

    @field_validator("aliases", mode="before")
    @classmethod
    def _parse_aliases(cls, value: Any) -> Any:
        """``name=model,name=model`` or a JSON object."""
        if not isinstance(value, str):
            return value
        value = value.strip()
        if value.startswith("{"):
            return json.loads(value)
        table: dict[str, str] = {}
        for pair in filter(None, (part.strip() for part in value.split(","))):
            alias, sep, model = (part.strip() for part in pair.partition("="))
            if not sep or not alias or not model:
                raise ValueError(f"{pair!r} is not name=model")
            table[alias] = model
        return table

    @property
    def default_model_of_kind(self) -> dict[str, str]:
        """The default model settings that are set, by kind."""
        chosen = {"chat": self.default_chat_model, "speech": self.default_speech_model,
                  "transcription": self.default_transcription_model,
                  "embedding": self.default_embedding_model}
        return {kind: model for kind, model in chosen.items() if model}

    @cached_property
    def resolved_models_dir(self) -> Path:
        return self.models_dir or _default_data_dir() / "models"

    @property
    def embedded_database(self) -> Path:
        """The SQLite file used when no database URL is set."""
        return self.data_dir / "hearth.db"

    @cached_property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.embedded_database}"
