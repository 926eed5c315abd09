"""The ``fine_tuning.run`` job: validate the files, wait for the trainer, train, publish the model.

One queue job carries a fine-tuning job from ``validating_files`` to its
end. Validation reads the uploaded examples once (chat format, roles, at
least ten examples, each within the base model's context, counted by its
own tokenizer) and copies them into the job's directory. Then the job waits
for a training slot (one per process by default, ``HEARTH_FINE_TUNING_CONCURRENCY``)
and runs ``python -m hearth.engines.training`` as a child process: training
takes every core and gigabytes of memory, and a process can be stopped at
once. The child reports each step and epoch checkpoint on stdout; this side
records them as events and checkpoints, polls the job's row so a cancel kills
the child within a second, and on success stores the metrics CSV as a file
and names the fine-tuned model.

An interrupted job (the server stopped or died) is taken over by the next
worker through the queue, and the child resumes from the last epoch
checkpoint. A job whose attempts ran out is marked failed with the reason;
``recover`` does the same at start for jobs whose queue job ended without them.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from anyio import to_thread

from hearth.accounting.meter import Meter, UsageEvent
from hearth.caller import Caller
from hearth.engines.training import PARENT_ENV, TrainingSpec
from hearth.files import service as files
from hearth.files.blobio import read_blob_sync
from hearth.files.service import FileStorage
from hearth.fine_tuning.service import ATTEMPTS, RUN
from hearth.jobs import Handler, JobContext, JobQueue, JobStatus
from hearth.models.service import ModelService
from hearth.settings import Settings
from hearth.store import files as files_repo
from hearth.store import fine_tuning as repo
from hearth.store.db import Database
from hearth.store.fine_tuning import (
    ACTIVE,
    CANCELLED,
    FAILED,
    PAUSED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    VALIDATING,
    FineTuningJobRow,
)
from hearth.store.ids import now

log = logging.getLogger("hearth.fine_tuning")

MIN_EXAMPLES = 10
# Tokens a chat template adds around each message (role markers, separators): a safe allowance.
_PER_MESSAGE_TOKENS = 8
# Learning rates a multiplier of 1 ("auto") means, for the LoRA adapters trained here.
_BASE_LEARNING_RATE = {"supervised": 1e-3, "dpo": 5e-4}
_POLL_SECONDS = 0.5
# The roles a chat template renders for training; tool turns are not trained on here.
_ROLES = frozenset({"system", "user", "assistant"})
_CSV_COLUMNS = ("step", "train_loss", "train_accuracy", "valid_loss", "valid_mean_token_accuracy")


class InvalidExamples(Exception):
    """The file cannot be trained on; ``param`` names it (training_file or validation_file)."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


def fine_tuned_name(row: FineTuningJobRow) -> str:
    """``ft:<base>:<organization>:<suffix>:<id>``, as OpenAI names fine-tuned models."""
    return f"ft:{row.model}:{row.organization_id}:{row.suffix or ''}:{row.id.removeprefix('ftjob-')[:8]}"


class FineTuningJobs:
    def __init__(self, db: Database, jobs: JobQueue, storage: FileStorage, models: ModelService,
                 meter: Meter, settings: Settings) -> None:
        self.db = db
        self.jobs = jobs
        self.storage = storage
        self.models = models
        self.meter = meter
        self.settings = settings
        self.root = settings.data_dir / "fine_tuning"
        self._slots = asyncio.Semaphore(max(1, settings.fine_tuning_concurrency))

    def handlers(self) -> dict[str, Handler]:
        return {RUN: self.run}

    async def run(self, ctx: JobContext) -> None:
        job_id = ctx.payload["job_id"]
        try:
            await self._run(job_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if ctx.attempt >= ATTEMPTS:
                # The queue gives up on the job now; so does the fine-tuning job, visibly.
                await to_thread.run_sync(self._fail, job_id, "training_failed",
                                         f"Fine-tuning failed: {exc}", None)
            raise

    async def _run(self, job_id: str) -> None:
        row = await to_thread.run_sync(self._load, job_id)
        if row is None or row.status not in ACTIVE:
            return
        work = self.root / job_id
        if row.status == VALIDATING:
            try:
                counts = await self._validate(row, work)
            except InvalidExamples as exc:
                code = "invalid_training_file" if exc.param == "training_file" else "invalid_validation_file"
                await to_thread.run_sync(self._fail, job_id, code, exc.message, exc.param)
                return
            if not await to_thread.run_sync(self._queued, row, counts):
                return
        async with self._slots:
            row = await to_thread.run_sync(self._load, job_id)
            if row is None or row.status not in (QUEUED, RUNNING):
                return
            resumed = row.status == RUNNING
            if not await to_thread.run_sync(self._started, job_id, resumed):
                return
            await self._train(job_id, work)

    # -- validation -----------------------------------------------------------------------------

    async def _validate(self, row: FineTuningJobRow, work: Path) -> dict[str, int]:
        """Check the files, copy their examples into ``work``; the example counts."""
        spec = self.models.resolve(row.base_model, "chat")
        model = await self.models.get(spec)
        context = int(spec.options.get("n_ctx", 8192))
        dpo = row.method["type"] == "dpo"
        counts: dict[str, int] = {}
        work.mkdir(parents=True, exist_ok=True)
        for param, file_id, name in (("training_file", row.training_file, "train.jsonl"),
                                     ("validation_file", row.validation_file, "valid.jsonl")):
            if file_id is None:
                continue
            raw = await to_thread.run_sync(self._read_file, row.project_id, file_id, param)
            examples = _parse(raw, param, dpo=dpo)
            if param == "training_file" and len(examples) < MIN_EXAMPLES:
                raise InvalidExamples(f"Training file has {len(examples)} example(s), but it must have at "
                                      f"least {MIN_EXAMPLES} examples.", param)
            for number, example in enumerate(examples, start=1):
                tokens = await to_thread.run_sync(_token_count, model.engine, example)
                if tokens > context:
                    raise InvalidExamples(f"Example {number} is {tokens} tokens long, over the model's "
                                          f"context length of {context} tokens.", param)
            (work / name).write_text("".join(json.dumps(example) + "\n" for example in examples))
            counts[param] = len(examples)
        return counts

    def _read_file(self, project_id: str, file_id: str, param: str) -> bytes:
        with self.db.session() as session:
            record = files_repo.get_file(session, project_id, file_id)
        if record is None:
            raise InvalidExamples(f"File '{file_id}' no longer exists.", param)
        return b"".join(read_blob_sync(self.storage.blobs, record.blob_key))

    # -- training -------------------------------------------------------------------------------

    async def _train(self, job_id: str, work: Path) -> None:
        row = await to_thread.run_sync(self._load, job_id)
        assert row is not None
        spec = self._spec(row, work)
        await to_thread.run_sync(spec.save, work / "spec.json")
        recorded = await to_thread.run_sync(self._last_step, job_id)
        log_file = await to_thread.run_sync(_open_log, work / "training.log")
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "hearth.engines.training", str(work / "spec.json"),
                stdout=asyncio.subprocess.PIPE, stderr=log_file,
                # The child asks to be killed when this process dies, so no trainer is orphaned.
                env={**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1",
                     PARENT_ENV: str(os.getpid())})
        finally:
            log_file.close()
        try:
            outcome = await self._follow(row, process, recorded)
        except BaseException:
            await _stop(process)
            raise
        if outcome is None:  # cancelled or paused
            return
        if outcome.get("event") == "done":
            await self._succeed(row, outcome, work)
            return
        message = outcome.get("message") or _tail(work / "training.log")
        await to_thread.run_sync(self._fail, job_id, "training_failed",
                                 f"Training stopped with an error: {message}", None)

    async def _follow(self, row: FineTuningJobRow, process: asyncio.subprocess.Process,
                      recorded: int) -> dict[str, Any] | None:
        """Record what the child reports until it ends; its last word, or None if the job was cancelled."""
        assert process.stdout is not None
        name = fine_tuned_name(row)
        last: dict[str, Any] = {}
        started = time.monotonic()
        first_step: int | None = None
        while True:
            try:
                line = await asyncio.wait_for(process.stdout.readline(), _POLL_SECONDS)
            except TimeoutError:
                if await to_thread.run_sync(self._status, row.id) in (CANCELLED, PAUSED):
                    await _stop(process)
                    return None
                continue
            if not line:
                await process.wait()
                return last
            try:
                event = json.loads(line)
            except ValueError:
                continue
            kind = event.get("event")
            if kind == "step":
                step = int(event["step"])
                first_step = step if first_step is None else first_step
                if step > recorded:
                    done = step - first_step + 1
                    remaining = event["total_steps"] - step
                    eta = now() + int((time.monotonic() - started) / done * remaining)
                    await to_thread.run_sync(self._step, row.id, event, eta)
            elif kind == "checkpoint":
                await to_thread.run_sync(self._checkpoint, row.id, event, f"{name}:ckpt-step-{event['step']}")
            elif kind in ("done", "error"):
                last = event

    def _spec(self, row: FineTuningJobRow, work: Path) -> TrainingSpec:
        kind = row.method["type"]
        hyper = row.method[kind]["hyperparameters"]
        base = self.models.resolve(row.base_model, "chat")
        return TrainingSpec(
            base_gguf=str(self.models.registry.store.dir_for(base) / "model.gguf"), work_dir=str(work),
            training_file=str(work / "train.jsonl"),
            validation_file=str(work / "valid.jsonl") if row.validation_file else None,
            method=kind, n_epochs=int(hyper["n_epochs"]), batch_size=int(hyper["batch_size"]),
            learning_rate=_BASE_LEARNING_RATE[kind] * float(hyper["learning_rate_multiplier"]),
            beta=float(hyper.get("beta") or 0.1), seed=row.seed,
            threads=self.settings.fine_tuning_threads or self.settings.inference_threads or 0)

    # -- rows and events ------------------------------------------------------------------------

    def _load(self, job_id: str) -> FineTuningJobRow | None:
        with self.db.session() as session:
            return repo.get_job(session, job_id)

    def _status(self, job_id: str) -> str | None:
        row = self._load(job_id)
        return None if row is None else row.status

    def _last_step(self, job_id: str) -> int:
        with self.db.session() as session:
            return repo.last_step(session, job_id)

    def _fail(self, job_id: str, code: str, message: str, param: str | None) -> None:
        at = now()
        with self.db.session() as session:
            if repo.move(session, job_id, ACTIVE, FAILED, error={"code": code, "message": message, "param": param},
                         finished_at=at, estimated_finish=None):
                repo.add_event(session, job_id, at, message, level="error")

    def _queued(self, row: FineTuningJobRow, counts: dict[str, int]) -> bool:
        """Resolve the "auto" hyperparameters for the examples there are, and queue the job."""
        method = json.loads(json.dumps(row.method))
        kind = method["type"]
        hyper = method[kind]["hyperparameters"]
        examples = counts["training_file"]
        if hyper["batch_size"] == "auto":
            hyper["batch_size"] = min(4, examples)
        if hyper["n_epochs"] == "auto":
            hyper["n_epochs"] = 3
        if hyper["learning_rate_multiplier"] == "auto":
            hyper["learning_rate_multiplier"] = 1.0
        if kind == "dpo" and hyper.get("beta", "auto") == "auto":
            hyper["beta"] = 0.1
        at = now()
        with self.db.session() as session:
            if not repo.move(session, row.id, [VALIDATING], QUEUED, method=method):
                return False
            repo.add_event(session, row.id, at, "Files validated, moving job to queued state")
        return True

    def _started(self, job_id: str, resumed: bool) -> bool:
        at = now()
        with self.db.session() as session:
            if resumed:
                row = repo.get_job(session, job_id)
                if row is None or row.status != RUNNING:
                    return False
                repo.add_event(session, job_id, at, "Fine-tuning job resumed after an interruption, from "
                               "its last checkpoint")
                return True
            if not repo.move(session, job_id, [QUEUED], RUNNING):
                return False
            repo.add_event(session, job_id, at, "Fine-tuning job started")
        return True

    def _step(self, job_id: str, event: dict[str, Any], eta: int) -> None:
        data = {"step": event["step"], "train_loss": event["train_loss"],
                "train_mean_token_accuracy": event["train_mean_token_accuracy"],
                "total_steps": event["total_steps"]}
        message = f"Step {event['step']}/{event['total_steps']}: training loss={event['train_loss']:.4f}"
        if "valid_loss" in event:
            data["valid_loss"] = event["valid_loss"]
            data["valid_mean_token_accuracy"] = event["valid_mean_token_accuracy"]
            message += f", validation loss={event['valid_loss']:.4f}"
        with self.db.session() as session:
            row = repo.get_job(session, job_id)
            if row is None or row.status != RUNNING:
                return
            repo.add_event(session, job_id, now(), message, type="metrics", data=data)
            repo.set_values(session, job_id, estimated_finish=eta)

    def _checkpoint(self, job_id: str, event: dict[str, Any], model: str) -> None:
        metrics = {key: value for key, value in event["metrics"].items()
                   if key in ("step", "train_loss", "train_mean_token_accuracy", "valid_loss",
                              "valid_mean_token_accuracy", "full_valid_loss", "full_valid_mean_token_accuracy")}
        at = now()
        with self.db.session() as session:
            if repo.add_checkpoint(session, job_id, at, int(event["step"]), metrics, model, event["adapter"]):
                repo.add_event(session, job_id, at, f"Checkpoint created at step {event['step']}")

    async def _succeed(self, row: FineTuningJobRow, outcome: dict[str, Any], work: Path) -> None:
        caller = Caller(organization_id=row.organization_id, project_id=row.project_id,
                        api_key_id=row.api_key_id)
        csv_bytes = await to_thread.run_sync(self._metrics_csv, row.id)
        stored = await files.store_file(self.storage, caller, "step_metrics.csv", "fine-tune-results",
                                        _once(csv_bytes))
        name = fine_tuned_name(row)
        at = now()
        with self.db.session() as session:
            moved = repo.move(session, row.id, [RUNNING], SUCCEEDED, fine_tuned_model=name,
                              adapter_path=outcome["adapter"], trained_tokens=int(outcome["trained_tokens"]),
                              result_files=[stored.id], finished_at=at, estimated_finish=None)
            if moved:
                repo.add_event(session, row.id, at, f"New fine-tuned model created: {name}")
                repo.add_event(session, row.id, at, "The job has successfully completed")
        if moved:
            # Once, by the run that moved the job: the tokens trained on, a line item of the costs.
            self.meter.record(UsageEvent(caller, kind="fine_tuning", endpoint="/v1/fine_tuning/jobs",
                                         model=row.model, input_tokens=int(outcome["trained_tokens"])))
            # What only resuming needed: the optimizer state beside each checkpoint's adapter.
            for state in work.glob("ckpt-step-*/state.pt"):
                state.unlink(missing_ok=True)

    def _metrics_csv(self, job_id: str) -> bytes:
        with self.db.session() as session:
            events = repo.metric_events(session, job_id)
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(_CSV_COLUMNS)
        for event in events:
            data = event.data or {}
            writer.writerow([data.get("step"), data.get("train_loss"), data.get("train_mean_token_accuracy"),
                             data.get("valid_loss", ""), data.get("valid_mean_token_accuracy", "")])
        return out.getvalue().encode()

    # -- upkeep ---------------------------------------------------------------------------------

    def recover(self) -> None:
        """At start: fail the unfinished jobs whose queue job ended without them (attempts spent)."""
        with self.db.session() as session:
            rows = [row for row in session.query(FineTuningJobRow).filter(FineTuningJobRow.status.in_(ACTIVE))]
        for row in rows:
            snapshot = self.jobs.get(row.queue_job_id) if row.queue_job_id else None
            if snapshot is None or snapshot.status in (JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.SUCCEEDED):
                self._fail(row.id, "training_interrupted",
                           "The training process stopped (the server went away) and the job could not be "
                           "resumed; its checkpoints, if any, are still usable.", None)

    def remove(self, job_id: str) -> None:
        shutil.rmtree(self.root / job_id, ignore_errors=True)


# -- examples -------------------------------------------------------------------------------------


def _parse(raw: bytes, param: str, *, dpo: bool) -> list[dict[str, Any]]:
    examples = []
    for number, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            example = json.loads(line)
        except ValueError:
            raise InvalidExamples(f"Line {number} is not valid JSON.", param) from None
        problem = _preference_problem(example) if dpo else _chat_problem(example)
        if problem:
            raise InvalidExamples(f"Line {number}: {problem}", param)
        examples.append(example)
    return examples


def _messages_problem(messages: Any, where: str) -> str | None:
    if not isinstance(messages, list) or not messages:
        return f"{where} must be a non-empty list of messages."
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in _ROLES:
            return f"{where}[{index}] has no valid role (system, user or assistant)."
        content = message.get("content")
        if not isinstance(content, str):
            return f"{where}[{index}] must have string content."
    return None


def _chat_problem(example: Any) -> str | None:
    if not isinstance(example, dict) or "messages" not in example:
        return "each example must be an object with 'messages' (the chat format)."
    problem = _messages_problem(example["messages"], "messages")
    if problem:
        return problem
    if not any(message["role"] == "assistant" for message in example["messages"]):
        return "the example has no assistant message to learn from."
    return None


def _preference_problem(example: Any) -> str | None:
    if not isinstance(example, dict) or not isinstance(example.get("input"), dict):
        return "each preference example needs 'input' (with 'messages'), 'preferred_output' and " \
               "'non_preferred_output'."
    for where, messages in (("input.messages", example["input"].get("messages")),
                            ("preferred_output", example.get("preferred_output")),
                            ("non_preferred_output", example.get("non_preferred_output"))):
        problem = _messages_problem(messages, where)
        if problem:
            return problem
    for key in ("preferred_output", "non_preferred_output"):
        if [message["role"] for message in example[key]] != ["assistant"]:
            return f"{key} must be one assistant message."
    return None


def _token_count(engine: Any, example: dict[str, Any]) -> int:
    messages = example.get("messages") or [
        *example["input"]["messages"], *example["preferred_output"], *example["non_preferred_output"]]
    return sum(len(engine.tokenize(message.get("content") or "")) + _PER_MESSAGE_TOKENS
               for message in messages)


# -- the child process ------------------------------------------------------------------------------


def _open_log(path: Path) -> Any:
    return open(path, "ab")  # handed to the child; closed here once it has it


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        try:
            process.kill()
        except ProcessLookupError:
            pass
        await asyncio.shield(process.wait())


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "the training process ended without a result"
    return " | ".join(text[-lines:]) or "the training process ended without a result"


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data
