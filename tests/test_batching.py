"""The micro-batcher on its own: batching, bounds, deadlines, cancelled work, model failures."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from app.batching import MicroBatcher
from app.errors import DeadlineExceeded, InferenceFailed, Overloaded


class RecordingModel:
    """Returns each image's first pixel as its 'probability' and records batch sizes."""

    def __init__(self, delay_s: float = 0.0, fail: bool = False) -> None:
        self.batches: list[list[float]] = []
        self.delay_s = delay_s
        self.fail = fail

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        time.sleep(self.delay_s)
        if self.fail:
            raise RuntimeError("boom")
        self.batches.append([float(x) for x in batch[:, 0]])
        return batch[:, :1]


def image(value: float) -> np.ndarray:
    return np.full(2, value, dtype=np.float32)


def run(coroutine):
    return asyncio.run(coroutine)


def submit_together(model: RecordingModel, n: int, **batcher_options: object) -> list[float]:
    """Submit images 0..n-1 at once through a running batcher; each request's own answer."""

    async def scenario() -> list[float]:
        batcher = MicroBatcher(model, max_queue=16, **batcher_options)  # type: ignore[arg-type]  # test-only options
        batcher.start()
        results = await asyncio.gather(*(batcher.submit(image(i), 5) for i in range(n)))
        await batcher.stop()
        return [float(r.probabilities[0]) for r in results]

    return run(scenario())


def test_concurrent_submissions_share_one_call_and_get_their_own_rows() -> None:
    model = RecordingModel()
    assert submit_together(model, 5, max_batch=8, max_wait_s=0.1) == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert model.batches == [[0.0, 1.0, 2.0, 3.0, 4.0]]


def test_batches_never_exceed_max_batch() -> None:
    model = RecordingModel()
    assert submit_together(model, 7, max_batch=3, max_wait_s=0.05) == [float(i) for i in range(7)]
    assert max(len(b) for b in model.batches) == 3
    assert sum(len(b) for b in model.batches) == 7


def test_a_job_nobody_answers_is_a_deadline_error_not_a_hang() -> None:
    async def scenario() -> None:
        batcher = MicroBatcher(RecordingModel(), max_batch=1, max_wait_s=0, max_queue=2)
        # Worker not started: the job is never answered, as if the worker had lost it.
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            await batcher.submit(image(1), 0.2)
        assert 0.19 <= time.monotonic() - started < 1.0
        await batcher.stop()

    run(scenario())


def test_full_queue_is_overloaded_at_once() -> None:
    async def scenario() -> None:
        batcher = MicroBatcher(RecordingModel(), max_batch=1, max_wait_s=0, max_queue=2)
        # Worker not started: nothing drains the queue.
        pending = [asyncio.ensure_future(batcher.submit(image(i), 5)) for i in range(2)]
        await asyncio.sleep(0)
        started = time.monotonic()
        with pytest.raises(Overloaded):
            await batcher.submit(image(9), 5)
        assert time.monotonic() - started < 0.05
        for task in pending:
            task.cancel()
        await batcher.stop()

    run(scenario())


def test_images_past_their_deadline_are_refused_without_a_model_call() -> None:
    model = RecordingModel(delay_s=0.3)

    async def scenario() -> None:
        batcher = MicroBatcher(model, max_batch=1, max_wait_s=0, max_queue=8)
        batcher.start()
        first = asyncio.ensure_future(batcher.submit(image(1), 5))
        await asyncio.sleep(0.05)
        with pytest.raises(DeadlineExceeded):
            await batcher.submit(image(2), 0.1)  # waits behind the 0.3 s call
        await first
        await batcher.stop()

    run(scenario())
    assert model.batches == [[1.0]]


def test_cancelled_requests_are_dropped_before_the_model() -> None:
    model = RecordingModel(delay_s=0.2)

    async def scenario() -> None:
        batcher = MicroBatcher(model, max_batch=1, max_wait_s=0, max_queue=8)
        batcher.start()
        first = asyncio.ensure_future(batcher.submit(image(1), 5))
        await asyncio.sleep(0.05)
        gone = asyncio.ensure_future(batcher.submit(image(2), 5))
        await asyncio.sleep(0.01)
        gone.cancel()  # what the route does when the client disconnects
        third = await batcher.submit(image(3), 5)
        await first
        assert float(third.probabilities[0]) == 3.0
        await batcher.stop()

    run(scenario())
    assert model.batches == [[1.0], [3.0]]


def test_model_failure_fails_that_batch_only() -> None:
    model = RecordingModel(fail=True)

    async def scenario() -> None:
        batcher = MicroBatcher(model, max_batch=2, max_wait_s=0, max_queue=8)
        batcher.start()
        with pytest.raises(InferenceFailed):
            await batcher.submit(image(1), 5)
        model.fail = False
        assert float((await batcher.submit(image(2), 5)).probabilities[0]) == 2.0
        await batcher.stop()

    run(scenario())


def test_batches_only_use_compiled_sizes_so_nothing_is_padded() -> None:
    model = RecordingModel(delay_s=0.05)
    answers = submit_together(model, 7, max_batch=8, max_wait_s=0.05, sizes=(1, 2, 4, 8))
    assert answers == [float(i) for i in range(7)]
    assert [len(b) for b in model.batches] == [4, 2, 1]
    assert sorted(x for b in model.batches for x in b) == [float(i) for i in range(7)]


def test_bucket_sizes_are_powers_of_two_and_their_halfway_points() -> None:
    from poster_genres.classifier import bucket_sizes

    assert bucket_sizes(16) == (1, 2, 3, 4, 6, 8, 12, 16)
    assert bucket_sizes(10) == (1, 2, 3, 4, 6, 8, 10)
    assert bucket_sizes(1) == (1,)


def test_the_benchmarks_time_the_batch_sizes_the_service_runs() -> None:
    from app.config import Settings
    from bench.run import SERVICE_BATCH_SIZES
    from poster_genres.classifier import bucket_sizes

    assert bucket_sizes(Settings.model_fields["max_batch_size"].default) == SERVICE_BATCH_SIZES


def test_a_dead_worker_fails_waiting_and_new_requests_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from app.errors import ServiceUnavailable

    async def scenario() -> None:
        batcher = MicroBatcher(RecordingModel(), max_batch=4, max_wait_s=0.5, max_queue=8)

        async def broken_collect() -> list[object]:
            await asyncio.sleep(0.1)
            raise RuntimeError("a bug in the worker")

        batcher._collect = broken_collect  # type: ignore[method-assign]  # inject the fault
        batcher.start()
        started = time.monotonic()
        with pytest.raises(ServiceUnavailable, match="model worker stopped"):
            await batcher.submit(image(1), 5)
        assert time.monotonic() - started < 1.0  # not the 5 s deadline
        assert isinstance(batcher.failure, RuntimeError)
        with pytest.raises(ServiceUnavailable):
            await batcher.submit(image(2), 5)
        await batcher.stop()
        logged = [r for r in caplog.records if r.name == "app.batching"]
        assert [r.getMessage() for r in logged] == ["the batch worker stopped: a bug in the worker"]
        assert logged[0].levelname == "CRITICAL"

    run(scenario())


def test_refusals_say_what_happened_and_the_worker_has_its_names() -> None:
    from app.errors import ServiceUnavailable

    names: list[str] = []

    def model(batch: np.ndarray) -> np.ndarray:
        names.append(threading.current_thread().name)
        return batch[:, :1]

    async def scenario() -> None:
        batcher = MicroBatcher(model, max_batch=1, max_wait_s=0, max_queue=2)
        with pytest.raises(DeadlineExceeded) as late:
            await batcher.submit(image(1), 0.05)  # no worker yet: nobody answers
        assert late.value.message == "No answer from the model in time; retry."
        waiting = asyncio.ensure_future(batcher.submit(image(3), 5))  # the second place
        await asyncio.sleep(0)
        with pytest.raises(Overloaded) as full:
            await batcher.submit(image(2), 5)
        assert full.value.message == "Too many images are waiting for the model; retry shortly."
        await batcher.stop()
        with pytest.raises(ServiceUnavailable) as stopped:
            await waiting
        assert stopped.value.message == "The service is shutting down."

        running = MicroBatcher(model, max_batch=1, max_wait_s=0, max_queue=4)
        running.start()
        assert [task.get_name() for task in running._tasks] == ["micro-batcher-0"]
        assert float((await running.submit(image(4), 5)).probabilities[0]) == 4.0
        await running.stop()

    run(scenario())
    assert names and all(name.startswith("inference") for name in names)


def test_a_worker_that_returns_is_a_failure_with_its_reason() -> None:
    from app.errors import ServiceUnavailable

    async def scenario() -> None:
        batcher = MicroBatcher(RecordingModel(), max_batch=1, max_wait_s=0, max_queue=4)

        async def returns() -> None:
            return None

        batcher._run = returns  # type: ignore[method-assign]  # inject the fault
        batcher.start()
        await asyncio.sleep(0.05)
        assert str(batcher.failure) == "the batch worker returned"
        with pytest.raises(ServiceUnavailable) as refused:
            await batcher.submit(image(1), 5)
        assert refused.value.message == "The model worker stopped; retry on another replica."
        await batcher.stop()

    run(scenario())


def test_a_second_image_within_the_wait_joins_the_first_when_it_was_announced() -> None:
    model = RecordingModel()

    async def scenario() -> None:
        batcher = MicroBatcher(model, max_batch=4, max_wait_s=0.3, max_queue=8, incoming=lambda: 1)
        batcher.start()
        first = asyncio.ensure_future(batcher.submit(image(1), 5))
        await asyncio.sleep(0.05)
        second = asyncio.ensure_future(batcher.submit(image(2), 5))
        await asyncio.gather(first, second)
        await batcher.stop()

    run(scenario())
    assert model.batches == [[1.0, 2.0]]


def seconds_for_one_image(model: RecordingModel, max_wait_s: float, incoming: int) -> float:
    """How long one image, submitted alone, takes to be answered."""

    async def scenario() -> float:
        batcher = MicroBatcher(
            model, max_batch=4, max_wait_s=max_wait_s, max_queue=8, incoming=lambda: incoming
        )
        batcher.start()
        started = time.monotonic()
        await batcher.submit(image(1), 5)
        elapsed = time.monotonic() - started
        await batcher.stop()
        return elapsed

    return run(scenario())


@pytest.mark.parametrize("incoming", [0, -1])
def test_an_image_alone_runs_at_once_when_nothing_else_is_on_its_way(incoming: int) -> None:
    model = RecordingModel()
    assert seconds_for_one_image(model, 2.0, incoming) < 1.0  # not the 2 s wait for company
    assert model.batches == [[1.0]]


def test_company_is_awaited_only_while_it_is_announced() -> None:
    """Another image announced but never arriving: the wait lasts its full length (nothing says
    the other will not come), then the one that came runs alone."""
    model = RecordingModel()
    assert seconds_for_one_image(model, 0.3, 1) >= 0.29
    assert model.batches == [[1.0]]


def test_the_model_thread_is_named_for_the_os_too() -> None:
    """`top -H` and profilers see "inference_0", not "python" (Linux's /proc/self/task/*/comm)."""
    seen: list[str] = []

    def model(batch: np.ndarray) -> np.ndarray:
        tid = threading.get_native_id()
        with open(f"/proc/self/task/{tid}/comm") as comm:
            seen.append(comm.read().strip())
        return batch[:, :1]

    async def scenario() -> None:
        batcher = MicroBatcher(model, max_batch=1, max_wait_s=0, max_queue=2)
        batcher.start()
        await batcher.submit(image(1), 5)
        await batcher.stop()

    run(scenario())
    assert seen == ["inference_0"]


def test_two_workers_run_two_model_calls_at_once() -> None:
    """With two interpreters (LiteRT, one thread each) two batches of one run side by side."""
    inside, peak = [0], [0]
    release = threading.Event()

    def model(batch: np.ndarray) -> np.ndarray:
        inside[0] += 1
        peak[0] = max(peak[0], inside[0])
        release.wait(2)
        inside[0] -= 1
        return batch.reshape(len(batch), -1)[:, :1].astype(np.float32)

    async def scenario() -> None:
        batcher = MicroBatcher(model, max_batch=1, max_wait_s=0, max_queue=8, workers=2)
        batcher.start()
        first = asyncio.ensure_future(batcher.submit(image(1), 5))
        second = asyncio.ensure_future(batcher.submit(image(2), 5))
        await asyncio.sleep(0.2)
        assert peak[0] == 2  # both calls are in the model at once
        release.set()
        assert [float((await f).probabilities[0]) for f in (first, second)] == [1.0, 2.0]
        await batcher.stop()

    run(scenario())
