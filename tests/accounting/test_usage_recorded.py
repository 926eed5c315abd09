"""The live server meters every request: the recorded events equal what the responses said.

A scripted mix (speech, transcription, chat streamed and not, legacy
completion, embeddings, moderation, a file) runs under a fresh project's key,
so the events of that project are exactly this test's, whatever else the
shared server is doing.
"""

from __future__ import annotations

import io
import json
import math
import time

import httpx
from sqlalchemy import select

from hearth.store.db import Database
from hearth.store.tables import UsageRecord
from tests.conftest import LiveServer
from tests.storage_backends import new_project_key


def _events(db: Database, project_id: str, expected: int) -> list[UsageRecord]:
    """The project's events once all have been written (the meter writes off the hot path)."""
    deadline = time.monotonic() + 60
    while True:
        with db.session() as session:
            rows = list(session.scalars(select(UsageRecord).where(UsageRecord.project_id == project_id)
                                        .order_by(UsageRecord.id)))
        if len(rows) >= expected or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


def _sse(response: httpx.Response) -> list[dict]:
    return [json.loads(line[6:]) for line in response.text.splitlines()
            if line.startswith("data: ") and line != "data: [DONE]"]


def test_every_request_records_what_its_response_reported(server: LiveServer) -> None:
    db = Database(f"sqlite:///{server.data_dir / 'hearth.db'}")
    project_id, key_id, secret = new_project_key(db)
    client = server.client(api_key=secret)
    http = httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {secret}"},
                        timeout=120)
    expected: list[dict] = []

    text = "Meters count what models do."
    speech = _sse(http.post("/v1/audio/speech", json={
        "model": "gpt-4o-mini-tts", "voice": "alloy", "input": text, "stream_format": "sse"}))
    done = speech[-1]["usage"]
    expected.append({"kind": "audio_speeches", "model": "gpt-4o-mini-tts", "characters": len(text),
                     "input_tokens": done["input_tokens"], "output_tokens": done["output_tokens"]})

    wav = client.audio.speech.create(model="tts-1", voice="nova", input="Hello from the meter.",
                                     response_format="wav").content
    expected.append({"kind": "audio_speeches", "model": "tts-1",
                     "characters": len("Hello from the meter.")})
    transcript = client.audio.transcriptions.create(model="whisper-1", file=("a.wav", wav),
                                                    response_format="json")
    seconds = transcript.usage.seconds  # type: ignore[union-attr]
    expected.append({"kind": "audio_transcriptions", "model": "whisper-1", "seconds": seconds})

    messages = [{"role": "user", "content": "Say hi."}]
    chat = client.chat.completions.create(model="gpt-4o-mini", messages=messages, max_tokens=8)
    expected.append({"kind": "completions", "endpoint": "/v1/chat/completions",
                     "input_tokens": chat.usage.prompt_tokens,
                     "output_tokens": chat.usage.completion_tokens})
    chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=messages,
                                                 max_tokens=8, stream=True,
                                                 stream_options={"include_usage": True}))
    streamed = chunks[-1].usage
    expected.append({"kind": "completions", "endpoint": "/v1/chat/completions",
                     "input_tokens": streamed.prompt_tokens,
                     "output_tokens": streamed.completion_tokens})
    legacy = client.completions.create(model="gpt-4o-mini", prompt="One, two,", max_tokens=4)
    expected.append({"kind": "completions", "endpoint": "/v1/completions",
                     "input_tokens": legacy.usage.prompt_tokens,
                     "output_tokens": legacy.usage.completion_tokens})

    embedding = client.embeddings.create(model="text-embedding-3-small", input=["a cat", "a dog"])
    expected.append({"kind": "embeddings", "input_tokens": embedding.usage.prompt_tokens})
    words = "You are wonderful."
    client.moderations.create(input=words)
    expected.append({"kind": "moderations", "characters": len(words)})
    stored = client.files.create(file=("notes.txt", io.BytesIO(b"x" * 1000)), purpose="assistants")
    expected.append({"kind": "files", "endpoint": "/v1/files", "bytes": stored.bytes})

    rows = _events(db, project_id, len(expected))
    db.dispose()
    assert len(rows) == len(expected)
    for row, want in zip(rows, expected, strict=True):
        assert row.api_key_id == key_id and row.requests == 1 and not row.batch
        for field, value in want.items():
            got = getattr(row, field)
            if field == "seconds":
                assert math.ceil(got) == value, (want, got)
            else:
                assert got == value, (field, want, got)
