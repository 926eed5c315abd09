"""Relational schema: organization -> projects -> API keys.

The shape mirrors OpenAI's administration model so later resources (users,
service accounts, files, batches) hang off a project without a rewrite.
Timestamps are Unix seconds, as the API reports them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Double, ForeignKey, Index, Integer, String, Text, false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class Organization(Base):
    __tablename__ = "organizations"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[int] = mapped_column(BigInteger)

    projects: Mapped[list[Project]] = relationship(back_populates="organization")


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    name: Mapped[str] = mapped_column(String(256))
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[int] = mapped_column(BigInteger)
    archived_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)

    organization: Mapped[Organization] = relationship(back_populates="projects")


class ApiKey(Base):
    """A secret that authenticates requests; only its SHA-256 is stored.

    ``kind`` is ``project`` (acts within one project) or ``admin`` (acts for
    the organization). ``redacted_value`` is what listings show.
    """

    __tablename__ = "api_keys"
    __table_args__ = (Index("ix_api_keys_secret_hash", "secret_hash", unique=True),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    project_id: Mapped[str | None] = mapped_column(ForeignKey("projects.id"), nullable=True)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(256))
    secret_hash: Mapped[str] = mapped_column(String(64))
    redacted_value: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[int] = mapped_column(BigInteger)
    last_used_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # Who the key belongs to (the Administration API's owner): a user, or a project's service account.
    user_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    service_account_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    # Past this time the key is refused; None never expires.
    expires_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class File(Base):
    """A stored file; its contents live in the blob store under ``blob_key``.

    A row is written ``pending`` (invisible to the API) before its blob, by the
    server instance named in ``writer``, and turns ``processed`` only once the
    blob is durable; a restarted instance deletes what it left pending.
    """

    __tablename__ = "files"
    __table_args__ = (Index("ix_files_project_created", "project_id", "created_at", "id"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"))
    filename: Mapped[str] = mapped_column(String(1024))
    purpose: Mapped[str] = mapped_column(String(32))
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[str] = mapped_column(String(16))
    blob_key: Mapped[str] = mapped_column(String(256))
    writer: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True, index=True)


class Upload(Base):
    """A file arriving in parts; completing it assembles the parts into a File."""

    __tablename__ = "uploads"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"), index=True)
    filename: Mapped[str] = mapped_column(String(1024))
    purpose: Mapped[str] = mapped_column(String(32))
    bytes: Mapped[int] = mapped_column(BigInteger)
    mime_type: Mapped[str] = mapped_column(String(256))
    status: Mapped[str] = mapped_column(String(16), index=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int] = mapped_column(BigInteger)
    # The expiry policy the completed File inherits, in seconds after its creation.
    file_expires_after: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    file_id: Mapped[str | None] = mapped_column(
        ForeignKey("files.id", ondelete="SET NULL"), nullable=True)

    file: Mapped[File | None] = relationship(lazy="joined")


class UploadPart(Base):
    """One part of an Upload; ``pending`` and ``writer`` work as for File."""

    __tablename__ = "upload_parts"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    upload_id: Mapped[str] = mapped_column(
        ForeignKey("uploads.id", ondelete="CASCADE"), index=True)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[str] = mapped_column(String(16))
    blob_key: Mapped[str] = mapped_column(String(256))
    writer: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[int] = mapped_column(BigInteger)


class Job(Base):
    """A unit of background work, claimed by one worker at a time under a lease.

    Unlike the API's objects, times here are float Unix seconds: leases are
    shorter than a second in tests and retries are scheduled to the
    millisecond. ``status`` is ``queued``, ``running``, ``succeeded``,
    ``failed`` or ``cancelled``. A ``running`` job whose lease has expired
    belongs to a worker that died; the next claim takes it over, and the
    handler resumes from ``progress``. ``project_id`` has no foreign key so
    that system jobs (sweeps) need no project.
    """

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_status_run_at", "status", "run_at"),
        Index("ix_jobs_status_lease", "status", "lease_expires_at"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    project_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    run_at: Mapped[float] = mapped_column(Double)
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_expires_at: Mapped[float | None] = mapped_column(Double, nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[float] = mapped_column(Double)
    started_at: Mapped[float | None] = mapped_column(Double, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Double, nullable=True)


class JobSchedule(Base):
    """Periodic work: a job of ``kind`` is enqueued every ``interval_seconds``.

    ``next_run_at`` (float Unix seconds) is advanced with a compare-and-set,
    so among several workers exactly one enqueues each tick.
    """

    __tablename__ = "job_schedules"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    interval_seconds: Mapped[float] = mapped_column(Double)
    next_run_at: Mapped[float] = mapped_column(Double)


class UsageRecord(Base):
    """One metered request or storage change: who made it, against what, and how much of each unit.

    Rows are appended by ``hearth.accounting.meter`` and read back, summed per
    time bucket, by ``hearth.accounting.usage_queries``. There are no foreign
    keys: usage is a ledger that outlives the keys and projects it names, and
    an insert must never fail on a concurrent delete. Every Usage API query
    filters on organization (or project), kind and a time range, hence the two
    indexes; ``kind`` sits before ``created_at`` so one kind's range is
    contiguous, and a query over every kind (costs) still uses them through
    ``kind IN (...)``.
    """

    __tablename__ = "usage_events"
    __table_args__ = (
        Index("ix_usage_events_org_kind_created", "organization_id", "kind", "created_at"),
        Index("ix_usage_events_project_kind_created", "project_id", "kind", "created_at"),
    )

    # SQLite autoincrements only a column declared exactly INTEGER PRIMARY KEY.
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    organization_id: Mapped[str] = mapped_column(String(64))
    project_id: Mapped[str] = mapped_column(String(64))
    api_key_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    user_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    service_account_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    kind: Mapped[str] = mapped_column(String(32))
    endpoint: Mapped[str] = mapped_column(String(64))
    model: Mapped[str | None] = mapped_column(String(128), nullable=True)
    batch: Mapped[bool] = mapped_column(Boolean)
    # Image usage is grouped by these; None for every other kind.
    size: Mapped[str | None] = mapped_column(String(32), nullable=True)
    source: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # The units, summed by the Usage API.
    requests: Mapped[int] = mapped_column(Integer)
    input_tokens: Mapped[int] = mapped_column(BigInteger)
    output_tokens: Mapped[int] = mapped_column(BigInteger)
    input_cached_tokens: Mapped[int] = mapped_column(BigInteger)
    input_audio_tokens: Mapped[int] = mapped_column(BigInteger)
    output_audio_tokens: Mapped[int] = mapped_column(BigInteger)
    characters: Mapped[int] = mapped_column(BigInteger)
    seconds: Mapped[float] = mapped_column(Double)
    images: Mapped[int] = mapped_column(Integer)
    sessions: Mapped[int] = mapped_column(Integer)
    bytes: Mapped[int] = mapped_column(BigInteger)


class Batch(Base):
    """A batch: the requests of an uploaded JSONL file, run in the background.

    ``status`` moves validating -> in_progress -> finalizing -> completed, or
    to failed (the file did not validate), expired (the window ran out) or
    cancelling -> cancelled; every move is a compare-and-set UPDATE, so
    workers racing over one batch agree on who makes it. Validation splits
    the lines into ``chunks`` runs (``BatchChunk``), one job each; every
    line's answer is a ``BatchResult``. ``api_key_id`` is the creator's key,
    which the lines are metered against.
    """

    __tablename__ = "batches"
    __table_args__ = (Index("ix_batches_project_created", "project_id", "created_at", "id"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    organization_id: Mapped[str] = mapped_column(String(64))
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"))
    api_key_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    endpoint: Mapped[str] = mapped_column(String(64))
    # The model every line names, when they all name the same one.
    model: Mapped[str | None] = mapped_column(String(128), nullable=True)
    # No foreign keys to files: a client may delete them while the batch lives on.
    input_file_id: Mapped[str] = mapped_column(String(64))
    output_file_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_file_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    completion_window: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    errors: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    # `metadata` is taken on declarative classes; the column keeps the API's name.
    metadata_: Mapped[dict[str, str] | None] = mapped_column("metadata", JSON, nullable=True)
    # How long the output and error files live, in seconds after their creation.
    output_expires_after: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    request_total: Mapped[int] = mapped_column(Integer, default=0)
    chunks: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int] = mapped_column(BigInteger)
    in_progress_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    finalizing_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    completed_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    failed_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    expired_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    cancelling_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    cancelled_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class BatchChunk(Base):
    """A run of a batch's lines, ``first_line`` to before ``end_line`` (1-based), run by one job.

    ``done`` turns true once, when the chunk's job has recorded every line
    it was going to run; the chunk whose turn makes every chunk done moves
    the batch to finalizing.
    """

    __tablename__ = "batch_chunks"

    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"), primary_key=True)
    index: Mapped[int] = mapped_column(Integer, primary_key=True)
    first_line: Mapped[int] = mapped_column(Integer)
    end_line: Mapped[int] = mapped_column(Integer)
    done: Mapped[bool] = mapped_column(Boolean, default=False)


class BatchResult(Base):
    """The answer to one line of a batch, as the line of the output or error file that carries it.

    The key (batch, line) makes a line's answer recorded once, however many
    workers raced to run it. ``output`` is emptied once the batch's files are
    written; the flag and token counts stay for the batch's request counts
    and usage.
    """

    __tablename__ = "batch_results"

    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"), primary_key=True)
    line: Mapped[int] = mapped_column(Integer, primary_key=True)
    custom_id: Mapped[str] = mapped_column(Text)
    ok: Mapped[bool] = mapped_column(Boolean)
    output: Mapped[str | None] = mapped_column(Text, nullable=True)
    input_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    output_tokens: Mapped[int] = mapped_column(BigInteger, default=0)


class StoredResponse(Base):
    """A Responses API response kept for retrieval and chaining (``store`` true, the default).

    ``body`` is the Response object as last written; ``request`` holds what a
    background job needs to generate it. ``status`` moves queued ->
    in_progress -> completed / incomplete / failed, or to cancelled, each move
    a compare-and-set. ``previous_response_id`` names the turn before, whose
    context this one continues; no foreign key, so deleting a turn leaves the
    later ones readable.
    """

    __tablename__ = "responses"
    __table_args__ = (Index("ix_responses_conversation", "conversation_id"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    organization_id: Mapped[str] = mapped_column(String(64))
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"), index=True)
    api_key_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    background: Mapped[bool] = mapped_column(Boolean, default=False)
    model: Mapped[str] = mapped_column(String(128))
    previous_response_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    conversation_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    job_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[int] = mapped_column(BigInteger)


class StoredResponseItem(Base):
    """One input item of a stored response, in the order it was given (``position``)."""

    __tablename__ = "response_items"
    __table_args__ = (Index("ix_response_items_item", "response_id", "item_id"),)

    response_id: Mapped[str] = mapped_column(ForeignKey("responses.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[str] = mapped_column(String(64))
    item: Mapped[dict[str, Any]] = mapped_column(JSON)


class Conversation(Base):
    """A Conversations API conversation: a project's running list of items that responses extend."""

    __tablename__ = "conversations"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    organization_id: Mapped[str] = mapped_column(String(64))
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"), index=True)
    metadata_: Mapped[dict[str, str] | None] = mapped_column("metadata", JSON, nullable=True)
    created_at: Mapped[int] = mapped_column(BigInteger)


class ConversationItem(Base):
    """One item of a conversation, in conversation order (``position``)."""

    __tablename__ = "conversation_items"
    __table_args__ = (Index("ix_conversation_items_item", "conversation_id", "item_id"),)

    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"),
                                                 primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[str] = mapped_column(String(64))
    item: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[int] = mapped_column(BigInteger)


class User(Base):
    """A member of the organization; ``role`` is ``owner`` (may administer) or ``reader``."""

    __tablename__ = "users"
    __table_args__ = (Index("ix_users_org_email", "organization_id", "email", unique=True),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"))
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[int] = mapped_column(BigInteger)


class ProjectMember(Base):
    """A user's membership of a project; ``role`` is ``owner`` or ``member``."""

    __tablename__ = "project_members"

    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[int] = mapped_column(BigInteger)


class ServiceAccount(Base):
    """A project's non-human identity; its API keys act within that project only."""

    __tablename__ = "service_accounts"
    __table_args__ = (Index("ix_service_accounts_project_created", "project_id", "created_at", "id"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"))
    name: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[int] = mapped_column(BigInteger)


class Invite(Base):
    """An invitation to join the organization; accepting its token (only the hash is kept) adds the user.

    ``projects`` lists the memberships the new user gets: ``[{"id", "role"}]``.
    """

    __tablename__ = "invites"
    __table_args__ = (Index("ix_invites_token_hash", "token_hash", unique=True),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    email: Mapped[str] = mapped_column(String(320))
    role: Mapped[str] = mapped_column(String(16))
    projects: Mapped[list[dict[str, str]]] = mapped_column(JSON)
    token_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int] = mapped_column(BigInteger)
    accepted_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class ProjectRateLimitRow(Base):
    """A project's limits for one model, where an administrator set them; None fields are unlimited.

    A model without a row has the defaults of the settings.
    """

    __tablename__ = "project_rate_limits"

    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"), primary_key=True)
    model: Mapped[str] = mapped_column(String(128), primary_key=True)
    max_requests_per_1_minute: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    max_tokens_per_1_minute: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    max_images_per_1_minute: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    max_audio_megabytes_per_1_minute: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    max_requests_per_1_day: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    batch_1_day_max_input_tokens: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class AuditLogRow(Base):
    """One administrative change, written in the transaction that makes it.

    ``created_at`` is the API's ``effective_at``; ``payload`` is the event's
    body under its type's key; ``actor`` the API's actor object. The actor's
    id and email and the changed resource's id are columns so that the
    listing filters on them.
    """

    __tablename__ = "audit_logs"
    __table_args__ = (Index("ix_audit_logs_org_created", "organization_id", "created_at", "id"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    organization_id: Mapped[str] = mapped_column(String(64))
    project_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    type: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[int] = mapped_column(BigInteger)
    actor: Mapped[dict[str, Any]] = mapped_column(JSON)
    actor_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    actor_email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    resource_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)


# -- Assistants (v1 and v2 share these rows; each version renders its own shape) -----------------


class AssistantRow(Base):
    """An assistant: a model with instructions and tools. ``file_ids`` are v1's attached files."""

    __tablename__ = "assistants"
    __table_args__ = (Index("ix_assistants_project_created", "project_id", "created_at", "id"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    organization_id: Mapped[str] = mapped_column(String(64))
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"))
    created_at: Mapped[int] = mapped_column(BigInteger)
    name: Mapped[str | None] = mapped_column(String(256), nullable=True)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    model: Mapped[str] = mapped_column(String(128))
    instructions: Mapped[str | None] = mapped_column(Text, nullable=True)
    tools: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    tool_resources: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    file_ids: Mapped[list[str]] = mapped_column(JSON)
    metadata_: Mapped[dict[str, str] | None] = mapped_column("metadata", JSON, nullable=True)
    temperature: Mapped[float | None] = mapped_column(Double, nullable=True)
    top_p: Mapped[float | None] = mapped_column(Double, nullable=True)
    response_format: Mapped[Any] = mapped_column(JSON, nullable=True)


class AssistantFileRow(Base):
    """A v1 assistant file: a File attached to an assistant (its id is the file's)."""

    __tablename__ = "assistant_files"

    assistant_id: Mapped[str] = mapped_column(ForeignKey("assistants.id", ondelete="CASCADE"), primary_key=True)
    file_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    # Microseconds when attached: the order files are listed in, even within one second.
    seq: Mapped[int] = mapped_column(BigInteger)


class ThreadRow(Base):
    __tablename__ = "assistant_threads"
    __table_args__ = (Index("ix_assistant_threads_project", "project_id"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    organization_id: Mapped[str] = mapped_column(String(64))
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"))
    created_at: Mapped[int] = mapped_column(BigInteger)
    tool_resources: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    metadata_: Mapped[dict[str, str] | None] = mapped_column("metadata", JSON, nullable=True)


class ThreadMessageRow(Base):
    """A message of a thread. Ids are time-ordered, so (created_at, id) is the thread's order."""

    __tablename__ = "assistant_messages"
    __table_args__ = (Index("ix_assistant_messages_thread", "thread_id", "created_at", "id"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    thread_id: Mapped[str] = mapped_column(ForeignKey("assistant_threads.id", ondelete="CASCADE"))
    project_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[int] = mapped_column(BigInteger)
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    incomplete_details: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    completed_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    incomplete_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    assistant_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    run_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    attachments: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    file_ids: Mapped[list[str]] = mapped_column(JSON)
    metadata_: Mapped[dict[str, str] | None] = mapped_column("metadata", JSON, nullable=True)


class RunRow(Base):
    """A run of an assistant on a thread.

    ``status`` follows the API's state machine; every move is a compare-and-set.
    ``driver`` names whoever is generating the run now (a streaming request or a
    job) and ``heartbeat_at`` when it last said so: a run whose driver went
    silent is taken over by its job.
    """

    __tablename__ = "assistant_runs"
    __table_args__ = (Index("ix_assistant_runs_thread", "thread_id", "created_at", "id"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    organization_id: Mapped[str] = mapped_column(String(64))
    project_id: Mapped[str] = mapped_column(String(64))
    api_key_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    thread_id: Mapped[str] = mapped_column(ForeignKey("assistant_threads.id", ondelete="CASCADE"))
    assistant_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))
    required_action: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    last_error: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    expires_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    started_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    cancelled_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    failed_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    completed_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    incomplete_details: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    model: Mapped[str] = mapped_column(String(128))
    instructions: Mapped[str] = mapped_column(Text)
    tools: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    file_ids: Mapped[list[str]] = mapped_column(JSON)
    metadata_: Mapped[dict[str, str] | None] = mapped_column("metadata", JSON, nullable=True)
    usage: Mapped[dict[str, int] | None] = mapped_column(JSON, nullable=True)
    temperature: Mapped[float | None] = mapped_column(Double, nullable=True)
    top_p: Mapped[float | None] = mapped_column(Double, nullable=True)
    max_prompt_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_completion_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    truncation_strategy: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    tool_choice: Mapped[Any] = mapped_column(JSON, nullable=True)
    parallel_tool_calls: Mapped[bool] = mapped_column(Boolean, default=True)
    response_format: Mapped[Any] = mapped_column(JSON, nullable=True)
    driver: Mapped[str | None] = mapped_column(String(128), nullable=True)
    heartbeat_at: Mapped[float | None] = mapped_column(Double, nullable=True)


class RunStepRow(Base):
    __tablename__ = "assistant_run_steps"
    __table_args__ = (Index("ix_assistant_run_steps_run", "run_id", "created_at", "id"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("assistant_runs.id", ondelete="CASCADE"))
    thread_id: Mapped[str] = mapped_column(String(64))
    assistant_id: Mapped[str] = mapped_column(String(64))
    project_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[int] = mapped_column(BigInteger)
    type: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    step_details: Mapped[dict[str, Any]] = mapped_column(JSON)
    last_error: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    expired_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    cancelled_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    failed_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    completed_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    metadata_: Mapped[dict[str, str] | None] = mapped_column("metadata", JSON, nullable=True)
    usage: Mapped[dict[str, int] | None] = mapped_column(JSON, nullable=True)
