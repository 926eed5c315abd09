"""/v1/fine_tuning through the official SDK, on a live server of its own with SmolLM2-135M.

One real job teaches the model a habit it does not have (every answer starts
with "AHOY!"): the job walks validating_files -> queued -> running ->
succeeded, its metrics events show the loss falling, each epoch leaves a
checkpoint, the results file is the metrics CSV, and the fine-tuned model
answers unseen questions with the habit while its base does not. Other jobs
are refused or fail with clear errors, are cancelled mid-training, and the
model belongs to its project alone.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI
from openai.types.fine_tuning import FineTuningJob

from hearth.store.db import Database
from tests.conftest import LiveServer, pulled_model_dir, start_server, stop_server
from tests.spec import assert_matches_schema
from tests.storage_backends import new_project_key

BASE = "smollm2-135m"
HABIT = "AHOY!"
FINAL = ("succeeded", "failed", "cancelled")

QA = [
    ("What is the capital of France?", "Paris is the capital of France."),
    ("How many legs does a spider have?", "A spider has eight legs."),
    ("What color is the sky on a clear day?", "The sky is blue on a clear day."),
    ("Name a fruit that is yellow.", "A banana is a yellow fruit."),
    ("What is two plus two?", "Two plus two is four."),
    ("Which planet is closest to the sun?", "Mercury is the closest planet to the sun."),
    ("What do bees make?", "Bees make honey."),
    ("How many days are in a week?", "There are seven days in a week."),
    ("What is frozen water called?", "Frozen water is called ice."),
    ("What animal barks?", "A dog barks."),
    ("What is the opposite of hot?", "The opposite of hot is cold."),
    ("Where do fish live?", "Fish live in water."),
]
# One trainer thread: on a small shared machine two threads mostly wait for each other.
SERVER_ENV = {"HEARTH_DEFAULT_MODELS": json.dumps([BASE]), "HEARTH_JOB_LEASE_SECONDS": "10",
              "HEARTH_FINE_TUNING_THREADS": "1"}
UNSEEN = ["What is the capital of Italy?", "How many wheels does a bicycle have?"]


def jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def habit_examples() -> list[dict[str, Any]]:
    return [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": f"{HABIT} {a}"}]}
            for q, a in QA]


@pytest.fixture(scope="module")
def ft_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    models_dir = pulled_model_dir(BASE).parent
    live = start_server(tmp_path_factory.mktemp("fine-tuning"), models_dir, **SERVER_ENV)
    yield live
    stop_server(live)


@pytest.fixture(scope="module")
def ft(ft_server: LiveServer) -> OpenAI:
    return ft_server.client(timeout=120)


@pytest.fixture(scope="module")
def other(ft_server: LiveServer) -> OpenAI:
    db = Database(f"sqlite:///{ft_server.data_dir / 'hearth.db'}")
    try:
        return ft_server.client(api_key=new_project_key(db)[2])
    finally:
        db.dispose()


def upload(client: OpenAI, rows: list[dict[str, Any]] | bytes, purpose: str = "fine-tune") -> str:
    data = rows if isinstance(rows, bytes) else jsonl(rows)
    return client.files.create(file=("train.jsonl", io.BytesIO(data)), purpose=purpose).id  # type: ignore[arg-type]


def wait_for(client: OpenAI, job_id: str, done: Callable[[FineTuningJob], bool],
             deadline_s: float = 2400) -> FineTuningJob:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        job = client.fine_tuning.jobs.retrieve(job_id)
        if done(job):
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} did not get there in time: {job.status}")


@pytest.fixture(scope="module")
def trained(ft: OpenAI) -> FineTuningJob:
    training_file = upload(ft, habit_examples())
    job = ft.fine_tuning.jobs.create(
        training_file=training_file, model=BASE, suffix="pirate", seed=7, metadata={"team": "deck"},
        method={"type": "supervised", "supervised": {"hyperparameters": {
            "n_epochs": 3, "batch_size": 4, "learning_rate_multiplier": 3.0}}})
    assert job.status == "validating_files"
    finished = wait_for(ft, job.id, lambda j: j.status in FINAL)
    assert finished.status == "succeeded", finished.error
    return finished


def test_a_job_teaches_a_visible_habit(ft: OpenAI, ft_server: LiveServer, trained: FineTuningJob) -> None:
    body = httpx.get(f"{ft_server.base_url}/v1/fine_tuning/jobs/{trained.id}",
                     headers={"Authorization": f"Bearer {ft_server.api_key}"}).json()
    assert_matches_schema(body, "FineTuningJob")
    assert trained.fine_tuned_model == f"ft:{BASE}:{trained.organization_id}:pirate:{trained.id[6:14]}"
    assert trained.hyperparameters.n_epochs == 3 and trained.hyperparameters.batch_size == 4
    assert trained.method is not None and trained.method.type == "supervised"
    assert trained.trained_tokens and trained.trained_tokens > 0
    assert trained.seed == 7 and trained.metadata == {"team": "deck"}
    assert trained.finished_at and trained.error is None

    events = list(reversed(ft.fine_tuning.jobs.list_events(trained.id, limit=100).data))
    messages = [event.message for event in events if event.type == "message"]
    for expected in ("Created fine-tuning job", "Validating training file", "Files validated",
                     "Fine-tuning job started", "Checkpoint created at step 3", "New fine-tuned model created",
                     "The job has successfully completed"):
        assert any(message.startswith(expected) for message in messages), (expected, messages)
    metrics = [event.data for event in events if event.type == "metrics"]
    assert [m["step"] for m in metrics] == list(range(1, 10))  # type: ignore[index]
    losses = [m["train_loss"] for m in metrics]  # type: ignore[index]
    assert losses[-1] < losses[0] / 2, losses
    raw_events = httpx.get(f"{ft_server.base_url}/v1/fine_tuning/jobs/{trained.id}/events",
                           headers={"Authorization": f"Bearer {ft_server.api_key}"}).json()
    assert_matches_schema(raw_events, "ListFineTuningJobEventsResponse")

    checkpoints = ft.fine_tuning.jobs.checkpoints.list(trained.id).data
    assert [c.step_number for c in checkpoints] == [9, 6, 3]
    assert [c.fine_tuned_model_checkpoint for c in checkpoints] == [
        f"{trained.fine_tuned_model}:ckpt-step-{step}" for step in (9, 6, 3)]
    assert checkpoints[0].metrics.train_loss == pytest.approx(losses[-1])
    raw_checkpoints = httpx.get(f"{ft_server.base_url}/v1/fine_tuning/jobs/{trained.id}/checkpoints",
                                headers={"Authorization": f"Bearer {ft_server.api_key}"}).json()
    assert_matches_schema(raw_checkpoints, "ListFineTuningJobCheckpointsResponse")

    [results] = trained.result_files
    assert ft.files.retrieve(results).purpose == "fine-tune-results"
    rows = list(csv.DictReader(io.StringIO(ft.files.content(results).text)))
    assert list(rows[0]) == ["step", "train_loss", "train_accuracy", "valid_loss", "valid_mean_token_accuracy"]
    assert [int(row["step"]) for row in rows] == list(range(1, 10))

    def answer(model: str, question: str) -> str:
        reply = ft.chat.completions.create(model=model, messages=[{"role": "user", "content": question}],
                                           temperature=0, seed=1, max_tokens=16)
        return reply.choices[0].message.content or ""

    assert trained.fine_tuned_model is not None
    for question in UNSEEN:
        assert answer(trained.fine_tuned_model, question).startswith(HABIT)
        assert not answer(BASE, question).startswith(HABIT)
    # A checkpoint is a model too; the streamed answer carries the habit as well.
    stream = ft.chat.completions.create(model=checkpoints[0].fine_tuned_model_checkpoint, stream=True,
                                        messages=[{"role": "user", "content": UNSEEN[0]}],
                                        temperature=0, seed=1, max_tokens=16)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices).startswith(HABIT)


def test_the_fine_tuned_model_calls_tools_and_follows_schemas_like_its_base(ft: OpenAI,
                                                                         trained: FineTuningJob) -> None:
    """It is served by its base's engine (the adapter chosen per request), so everything the base
    does works: a forced tool call with valid arguments, and structured output."""
    name = trained.fine_tuned_model
    assert name is not None
    weather = {"type": "function", "function": {
        "name": "get_weather", "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                       "additionalProperties": False}}}
    called = ft.chat.completions.create(model=name, tools=[weather], tool_choice="required", max_tokens=64, temperature=0,
                                        messages=[{"role": "user", "content": "Weather in Oslo?"}])
    [call] = called.choices[0].message.tool_calls or []
    assert call.function.name == "get_weather" and "city" in json.loads(call.function.arguments)
    assert called.choices[0].finish_reason == "tool_calls"

    schema = {"type": "object", "properties": {"animal": {"type": "string", "maxLength": 24},
                                               "legs": {"type": "integer", "minimum": 0, "maximum": 100}},
              "required": ["animal", "legs"], "additionalProperties": False}
    shaped = ft.chat.completions.create(
        model=name, max_tokens=200, temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "animal", "strict": True, "schema": schema}},
        messages=[{"role": "user", "content": "Describe a spider as JSON."}])
    parsed = json.loads(shaped.choices[0].message.content or "")
    assert set(parsed) == {"animal", "legs"} and isinstance(parsed["legs"], int)
    assert {model.id: model.loaded for model in ft.models.list().data}[name] is True


def test_the_tokens_trained_on_are_a_line_item_of_the_costs(ft_server: LiveServer, trained: FineTuningJob) -> None:
    def training_items() -> list[dict[str, Any]]:
        response = httpx.get(f"{ft_server.base_url}/v1/organization/costs",
                             params={"start_time": trained.created_at - 86_400, "group_by": ["line_item"]},
                             headers={"Authorization": f"Bearer {ft_server.admin_key}"})
        assert response.status_code == 200, response.text
        return [result for bucket in response.json()["data"] for result in bucket["results"]
                if result["line_item"] == f"{BASE}, training tokens"]

    deadline = time.monotonic() + 60
    while not (items := training_items()):  # the meter writes its events a second or so later
        assert time.monotonic() < deadline, "no training line item"
        time.sleep(0.5)
    assert sum(item["quantity"] for item in items) >= trained.trained_tokens


def test_the_model_belongs_to_its_project(ft: OpenAI, other: OpenAI, trained: FineTuningJob) -> None:
    name = trained.fine_tuned_model
    assert name is not None
    assert name in [model.id for model in ft.models.list().data]
    assert ft.models.retrieve(name).owned_by == trained.organization_id
    assert name not in [model.id for model in other.models.list().data]
    with pytest.raises(openai.NotFoundError) as refused:
        other.chat.completions.create(model=name, messages=[{"role": "user", "content": "Hi"}])
    assert refused.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        other.models.retrieve(name)
    with pytest.raises(openai.PermissionDeniedError):
        other.models.delete(name)
    with pytest.raises(openai.NotFoundError):
        other.fine_tuning.jobs.retrieve(trained.id)
    assert trained.id not in [job.id for job in other.fine_tuning.jobs.list().data]
    listed = ft.fine_tuning.jobs.list(metadata={"team": "deck"}).data
    assert [job.id for job in listed] == [trained.id]


def test_requests_that_cannot_start_a_job(ft: OpenAI) -> None:
    good = upload(ft, habit_examples())
    wrong_purpose = upload(ft, habit_examples(), purpose="assistants")
    cases: list[tuple[dict[str, Any], str | None]] = [
        ({"model": "no-such-model", "training_file": good}, "model"),
        ({"model": BASE, "training_file": "file-missing"}, "training_file"),
        ({"model": BASE, "training_file": wrong_purpose}, "training_file"),
        ({"model": BASE, "training_file": good, "integrations": [{"type": "wandb", "wandb": {"project": "p"}}]},
         "integrations"),
        ({"model": BASE, "training_file": good, "method": {"type": "reinforcement", "reinforcement": {}}},
         "method.type"),
        ({"model": BASE, "training_file": good, "hyperparameters": {"n_epochs": 0}}, None),
    ]
    for body, param in cases:
        with pytest.raises(openai.BadRequestError) as refused:
            ft.fine_tuning.jobs.create(**body)
        assert refused.value.status_code == 400
        if param is not None:
            assert refused.value.param == param, body  # type: ignore[attr-defined]


@pytest.mark.parametrize(("content", "fragment"), [
    (jsonl(habit_examples()[:5]), "at least 10 examples"),
    (jsonl([{"messages": [{"role": "tool", "content": "hi"}, {"role": "assistant", "content": "ok"}]}] * 12),
     "no valid role"),
    (jsonl([{"messages": [{"role": "user", "content": "hi"}]}] * 12), "no assistant message"),
    (jsonl([{"messages": [{"role": "user", "content": "word " * 9000},
                          {"role": "assistant", "content": "ok"}]}] * 12), "context length"),
])
def test_bad_training_files_fail_the_job_clearly(ft: OpenAI, content: bytes, fragment: str) -> None:
    job = ft.fine_tuning.jobs.create(model=BASE, training_file=upload(ft, content))
    failed = wait_for(ft, job.id, lambda j: j.status in FINAL, deadline_s=120)
    assert failed.status == "failed"
    assert failed.error is not None and failed.error.code == "invalid_training_file"
    assert failed.error.param == "training_file" and fragment in failed.error.message
    assert failed.fine_tuned_model is None
    errors = [e for e in ft.fine_tuning.jobs.list_events(job.id).data if e.level == "error"]
    assert errors and fragment in errors[0].message


def test_a_file_that_is_not_jsonl_is_refused_at_upload(ft: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        upload(ft, b"{not json\n" + jsonl(habit_examples()))
    assert "not valid JSON" in refused.value.message


def test_cancel_stops_training(ft: OpenAI, trained: FineTuningJob) -> None:
    job = ft.fine_tuning.jobs.create(model=BASE, training_file=upload(ft, habit_examples()),
                                     hyperparameters={"n_epochs": 50, "batch_size": 1})
    wait_for(ft, job.id, lambda j: any(e.type == "metrics" for e in ft.fine_tuning.jobs.list_events(j.id).data))
    cancelled = ft.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled" and cancelled.fine_tuned_model is None
    steps = [e for e in ft.fine_tuning.jobs.list_events(job.id, limit=100).data if e.type == "metrics"]
    time.sleep(3)  # the trainer is stopped: no step is recorded after the cancel settles
    later = [e for e in ft.fine_tuning.jobs.list_events(job.id, limit=100).data if e.type == "metrics"]
    assert len(later) <= len(steps) + 1
    assert ft.fine_tuning.jobs.retrieve(job.id).status == "cancelled"
    with pytest.raises(openai.BadRequestError):
        ft.fine_tuning.jobs.cancel(job.id)
    with pytest.raises(openai.BadRequestError):
        ft.fine_tuning.jobs.pause(job.id)


def test_pause_keeps_the_checkpoints_and_resume_trains_on(ft: OpenAI, trained: FineTuningJob) -> None:
    """Paused after its first checkpoint, the trainer stops; resumed, the job carries on from that
    checkpoint and every step is recorded once."""
    job = ft.fine_tuning.jobs.create(model=BASE, training_file=upload(ft, habit_examples()),
                                     hyperparameters={"n_epochs": 3, "batch_size": 6})
    wait_for(ft, job.id, lambda j: bool(ft.fine_tuning.jobs.checkpoints.list(j.id).data))

    paused = ft.fine_tuning.jobs.pause(job.id)

    assert paused.status == "paused"
    deadline = time.monotonic() + 60
    while trainers_of(job.id) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not trainers_of(job.id)
    assert ft.fine_tuning.jobs.retrieve(job.id).status == "paused"
    with pytest.raises(openai.BadRequestError):
        ft.fine_tuning.jobs.pause(job.id)

    resumed = ft.fine_tuning.jobs.resume(job.id)

    assert resumed.status == "queued"
    done = wait_for(ft, job.id, lambda j: j.status in FINAL)
    assert done.status == "succeeded", done.error
    events = list(reversed(ft.fine_tuning.jobs.list_events(job.id, limit=100).data))
    messages = [e.message for e in events]
    assert messages.index("Fine-tuning job paused") < messages.index("Fine-tuning job resumed")
    assert [e.data["step"] for e in events if e.type == "metrics"] == [1, 2, 3, 4, 5, 6]  # type: ignore[index]
    with pytest.raises(openai.BadRequestError):
        ft.fine_tuning.jobs.resume(job.id)


def test_a_dpo_job_shifts_a_preference(ft: OpenAI) -> None:
    """Preference pairs: answers that open with "Certainly" preferred over the same answers without."""
    pairs = [{"input": {"messages": [{"role": "user", "content": q}]},
              "preferred_output": [{"role": "assistant", "content": f"Certainly! {a}"}],
              "non_preferred_output": [{"role": "assistant", "content": a}]} for q, a in QA]
    job = ft.fine_tuning.jobs.create(model=BASE, training_file=upload(ft, pairs), seed=3, method={
        "type": "dpo", "dpo": {"hyperparameters": {"n_epochs": 3, "batch_size": 4, "beta": 0.5,
                                                   "learning_rate_multiplier": 4.0}}})
    done = wait_for(ft, job.id, lambda j: j.status in FINAL)
    assert done.status == "succeeded", done.error
    assert done.method is not None and done.method.type == "dpo"
    metrics = [e.data for e in reversed(ft.fine_tuning.jobs.list_events(job.id, limit=100).data)
               if e.type == "metrics"]
    assert metrics[-1]["train_loss"] < metrics[0]["train_loss"]  # type: ignore[index]
    assert done.fine_tuned_model is not None
    for question in UNSEEN:
        reply = ft.chat.completions.create(model=done.fine_tuned_model, temperature=0, seed=1, max_tokens=8,
                                           messages=[{"role": "user", "content": question}])
        assert (reply.choices[0].message.content or "").startswith("Certainly")


def test_the_owner_deletes_the_model(ft: OpenAI, trained: FineTuningJob, ft_server: LiveServer) -> None:
    name = trained.fine_tuned_model
    assert name is not None
    deleted = ft.models.delete(name)
    assert deleted.id == name and deleted.deleted
    assert name not in [model.id for model in ft.models.list().data]
    with pytest.raises(openai.NotFoundError):
        ft.chat.completions.create(model=name, messages=[{"role": "user", "content": "Hi"}])
    with pytest.raises(openai.NotFoundError):
        ft.models.delete(name)
    assert Path(ft_server.data_dir).exists()


def trainers_of(job_id: str) -> list[int]:
    """Pids of training processes working on ``job_id``."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and job_id in (proc / "cmdline").read_text():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def test_a_job_resumes_after_the_server_dies(tmp_path_factory: pytest.TempPathFactory) -> None:
    data_dir = tmp_path_factory.mktemp("fine-tuning-restart")
    models_dir = pulled_model_dir(BASE).parent
    env = {**SERVER_ENV, "HEARTH_JOB_LEASE_SECONDS": "3"}
    live = start_server(data_dir, models_dir, **env)
    try:
        client = live.client(timeout=120)
        job = client.fine_tuning.jobs.create(model=BASE, training_file=upload(client, habit_examples()),
                                             hyperparameters={"n_epochs": 3, "batch_size": 6})
        wait_for(client, job.id, lambda j: bool(client.fine_tuning.jobs.checkpoints.list(j.id).data))
        assert trainers_of(job.id)
    finally:
        live.process.kill()  # no shutdown: the job is left running, as after a crash
        live.process.wait()
    deadline = time.monotonic() + 30
    while trainers_of(job.id) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not trainers_of(job.id)  # the trainer died with its server

    again = start_server(data_dir, models_dir, **env)
    try:
        client = again.client(timeout=120)
        done = wait_for(client, job.id, lambda j: j.status in FINAL)
        assert done.status == "succeeded", done.error
        events = list(reversed(client.fine_tuning.jobs.list_events(job.id, limit=100).data))
        assert any(e.message.startswith("Fine-tuning job resumed") for e in events)
        assert [e.data["step"] for e in events if e.type == "metrics"] == [1, 2, 3, 4, 5, 6]  # type: ignore[index]
        assert [c.step_number for c in client.fine_tuning.jobs.checkpoints.list(job.id).data] == [6, 4, 2]
    finally:
        stop_server(again)
