"""Measure how long a queued job waits before an idle worker starts it (enqueue to running).

Run from the repository root (Redis must be running; the script flushes its Redis database):

    .venv/bin/python bench/enqueue.py                          # tiny and full-size model, 5 jobs each
    .venv/bin/python bench/enqueue.py --sizes tiny --jobs 10
    .venv/bin/python bench/enqueue.py --redis-url redis://127.0.0.1:6379/11

For each model size it writes a random-weight htdemucs (jobs.engine.testmodel), starts
`manage.py run_workers --workers 1` as the Procfile does (bench/live_site.py: its own SQLite
database and media folder in a temporary folder, DEBUG off) and waits until the worker has
registered as idle, which it does only after preloading the model. Then, one at a time, it
submits a 1 s clip through jobs.submission.submit_job (the upload form's path after validation),
and measures from the RQ job's `enqueued_at` to the row's `started_at` (written by
`Job.mark_running` in the work horse); then it cancels the job (jobs.control, as the page's
Cancel button does) and waits for the worker to be idle again before the next one. Printed per
size: each latency, p50 and max (the target is under 1 s). Not part of the test suite.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile
from live_site import DEFAULT_REDIS_URL, ROOT, Site

RATE = 44100


def wait_until(condition, timeout: float, what: str, interval: float = 0.01):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise SystemExit(f"timed out after {timeout:g} s waiting for {what}")


def clip(path: Path) -> Path:
    """One second of a tone and noise, new every time: no job is a repeat the site would reuse."""
    rng = np.random.default_rng()
    t = np.arange(RATE) / RATE
    tone = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 1000) * t) + 0.01 * rng.standard_normal(RATE)
    soundfile.write(path, np.stack([tone, tone], axis=1).astype(np.float32), RATE, subtype="PCM_16")
    return path


def idle_workers(queue) -> list:
    from rq import Worker

    return [w for w in Worker.all(queue=queue) if w.get_state() == "idle"]


def measure(size: str, jobs: int, work: Path) -> list[float]:
    """Start a supervised worker with a `size` model; return each job's enqueue-to-running seconds."""
    import django_rq
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.files.uploadedfile import TemporaryUploadedFile
    from rq.job import Job as RqJob

    from jobs.control import cancel_job
    from jobs.engine.testmodel import write_model
    from jobs.forms import check_upload
    from jobs.models import Job
    from jobs.options import JobOptions
    from jobs.submission import submit_job

    repo = work / f"models-{size}"
    if not any(repo.glob("*.th")):
        started = time.monotonic()
        write_model(repo, "htdemucs", size=size)
        print(f"wrote the {size} model in {time.monotonic() - started:.1f} s", flush=True)
    queue = django_rq.get_queue(settings.STEMSITE_QUEUE)
    queue.empty()
    owner, _ = get_user_model().objects.get_or_create(username="bench")
    env = {**os.environ, "STEMSITE_MODEL_REPO": str(repo)}
    log = (work / f"worker-{size}.log").open("w")
    started = time.monotonic()
    supervisor = subprocess.Popen(
        [sys.executable, "manage.py", "run_workers", "--workers", "1"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    latencies = []
    try:
        wait_until(lambda: idle_workers(queue), 300, "an idle worker")
        print(f"{size}: worker idle {time.monotonic() - started:.1f} s after start", flush=True)
        for number in range(jobs):
            path = clip(work / f"clip{number}.wav")
            upload = TemporaryUploadedFile(path.name, "audio/wav", path.stat().st_size, None)
            upload.write(path.read_bytes())
            upload.flush()
            submission = submit_job(owner, check_upload(upload), JobOptions(model="htdemucs"))
            upload.close()
            if submission.reused or submission.paused:
                raise SystemExit(f"job {number} was not queued afresh: {submission}")
            job = submission.job
            wait_until(lambda job=job: Job.objects.filter(pk=job.pk, started_at__isnull=False).exists(),
                       60, f"job {number} to start")  # fmt: skip
            job.refresh_from_db()
            enqueued_at = RqJob.fetch(job.rq_job_id, connection=queue.connection).enqueued_at
            seconds = (job.started_at - enqueued_at.replace(tzinfo=job.started_at.tzinfo)).total_seconds()
            latencies.append(seconds)
            print(f"{size}: job {number + 1}/{jobs} started {seconds * 1000:6.0f} ms after it was queued",
                  flush=True)  # fmt: skip
            cancel_job(job)  # the separation itself is not measured: stop it, as a user would
            wait_until(lambda job=job: Job.objects.get(pk=job.pk).is_finished, 120, f"job {number} to stop")
            wait_until(lambda: idle_workers(queue), 60, "the worker to be idle again")
    finally:
        supervisor.terminate()
        supervisor.wait(timeout=60)
        log.close()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="tiny,full", help="model sizes to measure, of tiny,full")
    parser.add_argument("--jobs", type=int, default=5, help="jobs per model size")
    parser.add_argument("--work", type=Path, help="keep files here instead of a temporary folder")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL, help="a Redis database it may flush")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="stemsite-bench-enqueue-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        settings = {"STEMSITE_MODEL": "htdemucs", "STEMSITE_UPLOADS_PER_HOUR": "0"}
        with Site("sqlite", work, "enqueue", args.redis_url, settings):
            results = {size: measure(size, args.jobs, work) for size in args.sizes.split(",")}
    print(f"\nEnqueue to running, idle worker, {args.jobs} jobs per model (target < 1 s)")
    print(f"{'model':8s} {'p50 ms':>8s} {'max ms':>8s}")
    for size, latencies in results.items():
        print(f"{size:8s} {statistics.median(latencies) * 1000:8.0f} {max(latencies) * 1000:8.0f}")


if __name__ == "__main__":
    main()
