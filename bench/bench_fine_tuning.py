"""Fine-tuning benchmark: a LoRA job through Hearth vs the same training loop run directly,
and the fine-tuned model's serving speed vs its base.

Measures, on this machine, with SmolLM2-135M (`FT_BASE` picks another chat model):
- training tokens per second through a Hearth job (upload, create, poll until
  succeeded; the tokens are the job's ``trained_tokens``, the time the span
  between its first and last metrics events) vs ``hearth.engines.training.run``
  called in this process on the same examples and hyperparameters (the same
  span: first to last step);
- time from the job's creation to the fine-tuned model's first answer, and
  what the job spent before training (validation, start of the trainer process,
  loading the base into PyTorch);
- serving: completion tokens per second of the fine-tuned model (base GGUF plus
  the LoRA adapter in llama.cpp) vs its base, 8 requests of 64 tokens each one
  after another at temperature 0; target ratio at least 0.9.
"""

from __future__ import annotations

import io
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from common import live_server
from openai import OpenAI

BASE = os.environ.get("FT_BASE", "smollm2-135m")
EXAMPLES = 16
EPOCHS = 3
BATCH = 4
SERVE_REQUESTS = 8
SERVE_TOKENS = 64
QUESTIONS = [f"Tell me one fact about the number {i}." for i in range(EXAMPLES)]


def examples() -> list[dict[str, Any]]:
    return [{"messages": [{"role": "user", "content": q},
                          {"role": "assistant", "content": f"AHOY! Here is a fact about {q.split()[-1][:-1]}: "
                                                           "it is a number, and numbers are useful."}]}
            for q in QUESTIONS]


def through_hearth(client: OpenAI) -> dict[str, Any]:
    data = "".join(json.dumps(e) + "\n" for e in examples()).encode()
    training_file = client.files.create(file=("train.jsonl", io.BytesIO(data)), purpose="fine-tune").id
    started = time.perf_counter()
    job = client.fine_tuning.jobs.create(model=BASE, training_file=training_file, seed=1, hyperparameters={
        "n_epochs": EPOCHS, "batch_size": BATCH, "learning_rate_multiplier": 2.0})
    while (job := client.fine_tuning.jobs.retrieve(job.id)).status not in ("succeeded", "failed", "cancelled"):
        time.sleep(0.2)
    assert job.status == "succeeded", job.error
    model = job.fine_tuned_model
    assert model is not None
    client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=4)
    to_answer = time.perf_counter() - started
    events = list(reversed(client.fine_tuning.jobs.list_events(job.id, limit=100).data))
    steps = [e for e in events if e.type == "metrics"]
    created = events[0].created_at
    span = max(steps[-1].created_at - steps[0].created_at, 1)
    per_step = job.trained_tokens / len(steps)  # type: ignore[operator]
    return {"model": model, "tokens": job.trained_tokens, "creation_to_answer_s": to_answer,
            "before_first_step_s": steps[0].created_at - created,
            # Whole seconds on the events: the span covers steps 2..N.
            "tokens_per_s": per_step * (len(steps) - 1) / span}


def direct() -> dict[str, Any]:
    from hearth.catalog.catalog import Catalog
    from hearth.catalog.provision import ModelStore
    from hearth.engines.training import TrainingSpec, run
    from hearth.settings import Settings

    spec = Catalog.load().resolve(BASE)
    gguf = ModelStore(Settings().resolved_models_dir).dir_for(spec) / "model.gguf"
    with tempfile.TemporaryDirectory(prefix="hearth-ft-bench-") as work:
        train = Path(work) / "train.jsonl"
        train.write_text("".join(json.dumps(e) + "\n" for e in examples()))
        stamps: list[tuple[float, int]] = []

        def record(event: dict[str, Any]) -> None:
            if event["event"] == "step":
                stamps.append((time.perf_counter(), event["trained_tokens"]))

        run(TrainingSpec(base_gguf=str(gguf), work_dir=work, training_file=str(train), n_epochs=EPOCHS,
                         batch_size=BATCH, learning_rate=2e-3, seed=1,
                         threads=Settings().fine_tuning_threads or Settings().inference_threads), record)
    (t0, tokens0), (t1, tokens1) = stamps[0], stamps[-1]
    return {"tokens": tokens1, "tokens_per_s": (tokens1 - tokens0) / (t1 - t0)}


def serving(client: OpenAI, model: str) -> float:
    rates = []
    for i in range(SERVE_REQUESTS):
        started = time.perf_counter()
        reply = client.chat.completions.create(
            model=model, temperature=0, max_tokens=SERVE_TOKENS,
            messages=[{"role": "user", "content": f"Write a long story about a ship, part {i}."}])
        assert reply.usage is not None
        rates.append(reply.usage.completion_tokens / (time.perf_counter() - started))
    return statistics.median(rates)


def main() -> None:
    with live_server([BASE]) as server:
        client = server.client(timeout=600)
        hearth = through_hearth(client)
        base_rate = serving(client, BASE)
        ft_rate = serving(client, hearth["model"])
    loop = direct()
    print(f"training ({BASE}, {EXAMPLES} examples x {EPOCHS} epochs, batch {BATCH}, LoRA r=16 on q/v):")
    print(f"  through a Hearth job: {hearth['tokens_per_s']:.0f} tokens/s ({hearth['tokens']} tokens)")
    print(f"  the loop run directly: {loop['tokens_per_s']:.0f} tokens/s ({loop['tokens']} tokens)")
    print(f"  ratio: {hearth['tokens_per_s'] / loop['tokens_per_s']:.2f}")
    print(f"job creation to the model's first answer: {hearth['creation_to_answer_s']:.1f} s "
          f"(creation to first step: {hearth['before_first_step_s']} s)")
    print(f"serving: base {base_rate:.1f} tokens/s, fine-tuned {ft_rate:.1f} tokens/s, "
          f"ratio {ft_rate / base_rate:.2f} (target >= 0.9)")


if __name__ == "__main__":
    main()
