"""Bounded work queues of the server: fast requests and slow-method jobs.

Both run their work on one background thread each: a network already uses
every core for one image, so running two at once only makes both slower.
The queues are bounded so that an overloaded server answers at once with
`QueueFull` (HTTP 503 with Retry-After) instead of piling up requests, and
work whose client has gone away is dropped before it starts.
"""

import concurrent.futures
import threading
import time
import uuid


class QueueFull(Exception):
    """The queue holds as many jobs as it may; retry after `retry_after` seconds."""

    def __init__(self, message, retry_after):
        super().__init__(message)
        self.retry_after = int(retry_after)


class Cancelled(Exception):
    """Raised inside a job's work to stop it (the client cancelled or went away)."""


class FastQueue:
    """Runs short functions one at a time, at most `max_pending` waiting or running.

    Args:
        max_pending: jobs accepted at once; one more raises `QueueFull`.
        retry_after: seconds suggested to a refused client.
    """

    def __init__(self, max_pending=8, retry_after=2):
        self.max_pending = int(max_pending)
        self.retry_after = retry_after
        self._executor = concurrent.futures.ThreadPoolExecutor(1, "keras-style-fast")
        self._pending = 0
        self._lock = threading.Lock()

    @property
    def pending(self):
        """Jobs waiting or running now."""
        return self._pending

    def submit(self, function, cancelled):
        """Queues `function()`; returns a concurrent future.

        Args:
            function: the work, called on the worker thread.
            cancelled: a `threading.Event`; set before the job starts, the
                job is skipped and its future raises `Cancelled`.

        Raises:
            QueueFull: when `max_pending` jobs are already queued.
        """
        with self._lock:
            if self._pending >= self.max_pending:
                raise QueueFull(
                    f"The server is busy ({self._pending} requests queued); try again shortly",
                    self.retry_after,
                )
            self._pending += 1

        def run():
            try:
                if cancelled.is_set():
                    raise Cancelled("the client went away before its job started")
                return function()
            finally:
                with self._lock:
                    self._pending -= 1

        return self._executor.submit(run)

    def close(self):
        self._executor.shutdown(wait=False, cancel_futures=True)


class SlowJob:
    """One slow-method job: its state, progress and latest preview, read by the page.

    `state` goes queued -> running -> done | failed | cancelled.
    """

    def __init__(self, work, total):
        self.id = uuid.uuid4().hex
        self.work = work  # work(job) -> result image; calls job.progress(...)
        self.total = int(total)
        self.state = "queued"
        self.iteration = 0
        self.preview = None  # latest intermediate image (float32 RGB)
        self.result = None
        self.error = None
        self.created = time.monotonic()
        self.started = self.finished = None
        self.last_seen = time.monotonic()
        self.cancel_event = threading.Event()

    def progress(self, iteration, image):
        """Records progress; raises `Cancelled` when the job was cancelled (stops the work)."""
        self.iteration = int(iteration)
        self.preview = image
        if self.cancel_event.is_set():
            raise Cancelled("cancelled")

    def status(self, position=None):
        """The JSON-ready view of this job."""
        end = self.finished or time.monotonic()
        return {
            "id": self.id,
            "state": self.state,
            "iteration": self.iteration,
            "total": self.total,
            "position": position,
            "elapsed_s": round(end - self.started, 2) if self.started else 0.0,
            "has_preview": self.preview is not None,
            "error": self.error,
        }


class SlowQueue:
    """Runs `SlowJob`s one at a time on a worker thread; bounded, with abandonment.

    Args:
        max_queued: jobs waiting or running at once; one more raises `QueueFull`.
        abandon_after: seconds without a status poll after which a job is
            cancelled (its page was closed).
        retry_after: seconds suggested to a refused client.
        keep: finished jobs kept for their results.
    """

    def __init__(self, max_queued=3, abandon_after=30.0, retry_after=30, keep=16):
        self.max_queued = int(max_queued)
        self.abandon_after = float(abandon_after)
        self.retry_after = retry_after
        self.keep = int(keep)
        self._jobs = {}  # id -> SlowJob, in submission order
        self._lock = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="keras-style-slow", daemon=True)
        self._thread.start()

    def _active(self):
        return [j for j in self._jobs.values() if j.state in ("queued", "running")]

    def submit(self, work, total):
        """Queues a job; returns it. Raises `QueueFull` when `max_queued` are active."""
        with self._lock:
            self._drop_abandoned()
            active = self._active()
            if len(active) >= self.max_queued:
                raise QueueFull(
                    f"The slow method is busy ({len(active)} jobs queued or running); "
                    f"try again in about {self.retry_after} s",
                    self.retry_after,
                )
            job = SlowJob(work, total)
            self._jobs[job.id] = job
            self._forget_old()
            self._lock.notify_all()
            return job

    def get(self, job_id):
        """The job and its queue position (0: running); marks it as seen. KeyError if unknown."""
        with self._lock:
            job = self._jobs[job_id]
            job.last_seen = time.monotonic()
            active = self._active()
            return job, (active.index(job) if job in active else None)

    def cancel(self, job_id):
        """Cancels a queued or running job (a running one stops at its next progress report)."""
        with self._lock:
            job = self._jobs[job_id]
            job.cancel_event.set()
            if job.state == "queued":
                self._finish(job, "cancelled")
            return job

    def _drop_abandoned(self):
        now = time.monotonic()
        for job in self._active():
            if now - job.last_seen > self.abandon_after:
                job.cancel_event.set()
                if job.state == "queued":
                    self._finish(job, "cancelled")

    def _forget_old(self):
        done = [j for j in self._jobs.values() if j.state not in ("queued", "running")]
        for job in done[: max(0, len(done) - self.keep)]:
            del self._jobs[job.id]

    def _finish(self, job, state, error=None):
        job.state, job.error, job.finished = state, error, time.monotonic()
        job.work = None

    def _next(self):
        with self._lock:
            while not self._closed:
                self._drop_abandoned()
                queued = [j for j in self._jobs.values() if j.state == "queued"]
                if queued:
                    job = queued[0]
                    job.state, job.started = "running", time.monotonic()
                    return job
                self._lock.wait(timeout=1.0)
            return None

    def _loop(self):
        while (job := self._next()) is not None:
            self._run(job)

    def _run(self, job):
        watchdog = threading.Thread(target=self._watch, args=(job,), daemon=True)
        watchdog.start()
        try:
            result = job.work(job)
        except Cancelled:
            with self._lock:
                self._finish(job, "cancelled")
        except ValueError as e:
            with self._lock:
                self._finish(job, "failed", str(e))
        except Exception as e:  # the job's failure is reported on the page, the worker lives on
            with self._lock:
                self._finish(job, "failed", f"the slow method failed: {type(e).__name__}: {e}")
        else:
            with self._lock:
                job.result = result
                self._finish(job, "done")

    def _watch(self, job):
        """Cancels the running `job` when its page stops polling."""
        while job.state == "running":
            if time.monotonic() - job.last_seen > self.abandon_after:
                job.cancel_event.set()
                return
            time.sleep(0.5)

    def close(self):
        with self._lock:
            self._closed = True
            for job in self._active():
                job.cancel_event.set()
            self._lock.notify_all()
