"""The server's bounded work queues: limits, skipped work of departed clients, abandonment."""

import threading
import time

import pytest

from keras_style.serve import jobs


def test_fast_queue_bounds_and_skips_cancelled_jobs():
    queue = jobs.FastQueue(max_pending=2, retry_after=3)
    release = threading.Event()
    calls = []
    try:
        first = queue.submit(lambda: (release.wait(), calls.append("first")), threading.Event())
        gone = threading.Event()
        second = queue.submit(lambda: calls.append("second"), gone)
        with pytest.raises(jobs.QueueFull) as refused:
            queue.submit(lambda: None, threading.Event())
        assert refused.value.retry_after == 3
        gone.set()  # its client disconnected while it waited
        release.set()
        first.result(timeout=5)
        with pytest.raises(jobs.Cancelled):
            second.result(timeout=5)
        assert calls == ["first"] and queue.pending == 0
    finally:
        queue.close()


def _work(steps, delay=0.05):
    def work(job):
        for step in range(1, steps + 1):
            time.sleep(delay)
            job.progress(step, None)
        return "image"

    return work


def _wait(queue, job_id, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job, _ = queue.get(job_id)
        if job.state in ("done", "failed", "cancelled"):
            return job
        time.sleep(0.02)
    raise AssertionError(job.status())


def test_slow_queue_runs_one_at_a_time_and_cancels():
    queue = jobs.SlowQueue(max_queued=2, abandon_after=60)
    try:
        first = queue.submit(_work(100), 100)
        second = queue.submit(_work(3), 3)
        with pytest.raises(jobs.QueueFull):
            queue.submit(_work(1), 1)
        time.sleep(0.2)
        assert queue.get(first.id)[1] == 0 and queue.get(second.id) == (second, 1)
        assert first.state == "running" and second.state == "queued"
        queue.cancel(first.id)
        assert _wait(queue, first.id).state == "cancelled"
        assert first.iteration < 100
        done = _wait(queue, second.id)
        assert done.state == "done" and done.result == "image" and done.iteration == 3
    finally:
        queue.close()


def test_slow_queue_drops_jobs_nobody_polls():
    queue = jobs.SlowQueue(max_queued=2, abandon_after=0.3)
    try:
        job = queue.submit(_work(400, delay=0.01), 400)
        time.sleep(1.5)  # no status poll: the page was closed
        assert job.state == "cancelled" and job.iteration < 400
    finally:
        queue.close()


def test_slow_queue_reports_failures_as_messages():
    queue = jobs.SlowQueue()

    def bad(job):
        raise ValueError("the painting is empty")

    def crash(job):
        raise RuntimeError("boom")

    try:
        assert _wait(queue, queue.submit(bad, 1).id).error == "the painting is empty"
        assert "RuntimeError: boom" in _wait(queue, queue.submit(crash, 1).id).error
    finally:
        queue.close()
