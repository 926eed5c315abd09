"""ModelRunner's lanes and admissions, on plain Python functions, and ModelService.admit over them."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from hearth.engines.runner import Admission, Lane, ModelBusy, ModelRunner, _priority, _Pump
from hearth.errors import RateLimited
from tests.services.conftest import Hearth


@pytest.fixture
def runner() -> Iterator[ModelRunner]:
    """One worker thread and room for two waiting online requests."""
    model_runner = ModelRunner("test", workers=1, queue_depth=2)
    yield model_runner
    model_runner.shutdown()


def counted(released: list[Lane], lane: Lane = Lane.online) -> Admission:
    """An admission that notes each time its place is given back."""
    return Admission(lambda: released.append(lane), lane)


def test_online_admission_is_refused_past_workers_plus_queue_depth(runner: ModelRunner) -> None:
    """Three places (one running, two waiting) are given; the fourth is refused until one is released."""
    admissions = [runner.admit() for _ in range(3)]

    with pytest.raises(ModelBusy):
        runner.admit()
    admissions[0].release()
    admissions[0].release()  # a second release gives nothing back twice
    assert runner.admitted == 2
    runner.admit()
    assert runner.admitted == 3


def test_model_service_turns_a_full_queue_into_a_429(hearth: Hearth) -> None:
    """ModelService.admit refuses an online request at a full model with RateLimited(model_overloaded)."""
    model = hearth.loaded("gpt-4o-mini")
    for _ in range(3):
        model.runner.admit()

    with pytest.raises(RateLimited) as refused:
        asyncio.run(hearth.models.admit(model))

    error = refused.value
    assert (error.status_code, error.type, error.code) == (429, "rate_limit_error", "model_overloaded")
    assert error.headers == {"Retry-After": "1"}
    assert model.runner.admitted == 3


def test_background_admission_waits_for_a_place_instead_of_failing(hearth: Hearth) -> None:
    """Background work is admitted even when the online queue is full; past its own places it waits,
    and proceeds once one is given back."""
    model = hearth.loaded("gpt-4o-mini")
    for _ in range(3):
        model.runner.admit()

    async def scenario() -> None:
        first = await hearth.models.admit(model, background=True)
        waiting = asyncio.ensure_future(hearth.models.admit(model, background=True))
        await asyncio.sleep(0)
        assert not waiting.done()
        first.release()
        second = await waiting
        assert (first.lane, second.lane) == (Lane.background, Lane.background)
        second.release()

    asyncio.run(scenario())


def test_queued_online_work_runs_before_queued_background_work(runner: ModelRunner) -> None:
    """Behind a busy worker, online tasks submitted after a background one still run first."""
    started, finish = threading.Event(), threading.Event()
    order: list[str] = []

    def hold() -> None:
        started.set()
        finish.wait(5)

    async def scenario() -> None:
        busy = asyncio.ensure_future(runner.run(hold))
        await asyncio.to_thread(started.wait, 5)
        background = await runner.admit_background()
        queued = [asyncio.ensure_future(runner.run(order.append, "background", admission=background)),
                  asyncio.ensure_future(runner.run(order.append, "online 1")),
                  asyncio.ensure_future(runner.run(order.append, "online 2"))]
        await asyncio.sleep(0)  # each task runs up to its submission, in the order created
        finish.set()
        await asyncio.gather(busy, *queued)

    asyncio.run(scenario())

    assert order == ["online 1", "online 2", "background"]


def test_requests_are_served_first_come_first_served(runner: ModelRunner,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Two streams share one worker: once both have started, every later step of the one admitted
    first runs before any of the second's, so the first finishes whole instead of both finishing
    together at the end. (The read-ahead is raised so that the consumer's pace plays no part.)"""
    monkeypatch.setattr(_Pump, "AHEAD", 10)
    order: list[str] = []

    def steps(name: str) -> Iterator[None]:
        for step in range(4):
            order.append(f"{name}{step}")
            yield None

    async def drain(name: str) -> None:
        async for _ in runner.stream(lambda: steps(name)):
            pass

    async def scenario() -> None:
        await asyncio.gather(drain("a"), drain("b"))

    asyncio.run(scenario())

    assert [step for step in order if not step.endswith("0")] == ["a1", "a2", "a3", "b1", "b2", "b3"]


def test_a_streams_first_item_goes_ahead_of_earlier_requests_later_steps() -> None:
    """Online before background; within a lane a stream's first item first, then by admission."""
    early, late = Admission(lambda: None, Lane.online), Admission(lambda: None, Lane.online)
    background = Admission(lambda: None, Lane.background)

    assert _priority(late, first_item=True) < _priority(early) < _priority(late)
    assert _priority(late) < _priority(background, first_item=True)


def test_run_admits_for_the_call_when_given_no_admission(runner: ModelRunner) -> None:
    """Without an admission, run() holds a place of its own while the function runs."""
    assert asyncio.run(runner.run(lambda: runner.admitted)) == 1
    assert runner.admitted == 0


def test_run_uses_the_admission_it_is_given(runner: ModelRunner) -> None:
    """run() with an admission takes no second place and leaves it held: a request that
    prepares and then streams keeps one place from start to end."""
    released: list[Lane] = []

    assert asyncio.run(runner.run(lambda: runner.admitted, admission=counted(released))) == 0
    assert released == []


def test_a_finished_stream_releases_its_admission_once(runner: ModelRunner) -> None:
    """Every item arrives in order, on the runner's threads, and the admission is released once at the end."""
    released: list[Lane] = []

    async def scenario() -> list[int]:
        return [item async for item in runner.stream(lambda: iter(range(4)), admission=counted(released))]

    assert asyncio.run(scenario()) == [0, 1, 2, 3]
    assert released == [Lane.online]
    assert runner.admitted == 0


def test_a_closed_stream_releases_its_admission_once_and_closes_the_iterator(runner: ModelRunner) -> None:
    """Closing after one item gives the place back once and closes the generator on the model's thread."""
    released: list[Lane] = []
    closed = threading.Event()

    def numbers() -> Iterator[int]:
        try:
            yield from range(100)
        finally:
            closed.set()

    async def scenario() -> int:
        stream = runner.stream(numbers, admission=counted(released, Lane.background))
        first = await anext(stream)
        await stream.aclose()
        return first

    assert asyncio.run(scenario()) == 0
    assert released == [Lane.background]
    assert closed.wait(5)


def test_a_failing_stream_raises_and_releases_its_admission_once(runner: ModelRunner) -> None:
    """An error inside the iterator reaches the consumer; the place is still given back, once."""
    released: list[Lane] = []

    def broken() -> Iterator[int]:
        yield 1
        raise ValueError("engine failure")

    async def scenario() -> list[int]:
        return [item async for item in runner.stream(broken, admission=counted(released))]

    with pytest.raises(ValueError, match="engine failure"):
        asyncio.run(scenario())
    assert released == [Lane.online]
