"""One job's trace as text: an upload through the page and its separation, traced to a local receiver.

Run from the repository root (Redis running, as for the tests):

    .venv/bin/python bench/trace_tree.py                     # a 6 s track and the tiny test model
    .venv/bin/python bench/trace_tree.py --seconds 20 --redis-url redis://127.0.0.1:6379/12
    .venv/bin/python bench/trace_tree.py --export     # then a mix export of the stems, its own trace

It starts the site as the load benchmarks do (bench/live_site.py: daphne, DEBUG off, SQLite in a
temporary folder) with OTEL_EXPORTER_OTLP_ENDPOINT pointing at a real OTLP/HTTP receiver in this
process (tests/otlp_receiver.py, the one the tests use), uploads a generated track through the
upload form as a browser does, runs one burst worker on both queues, and prints the upload's trace
as a tree: every span with its service, its start from the trace's start and its duration. Redis
commands are left out unless --redis is given. This is what a collector such as Jaeger shows for
the same job (docs: "Tracing"). Not part of the test suite.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import soundfile
from live_site import DEFAULT_REDIS_URL, ROOT, Site, free_port, session_key

sys.path.insert(0, str(ROOT))
from tests.otlp_receiver import OtlpReceiver, span_tree  # noqa: E402

CSRF = "s" * 32  # a CSRF cookie the form repeats, as tests/test_load.py sends it


def make_track(path: Path, seconds: float) -> Path:
    t = np.arange(int(seconds * 44100)) / 44100
    mono = 0.2 * np.sin(2 * np.pi * 220 * t) + 0.05 * np.random.default_rng(0).standard_normal(len(t))
    soundfile.write(path, np.stack([mono, 0.8 * mono], axis=1).astype(np.float32), 44100)
    return path


def upload(base: str, session: str, track: Path) -> str:
    """POST the upload form as a browser does; returns the job's id from the redirect."""
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="csrfmiddlewaretoken"\r\n\r\n{CSRF}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{track.name}"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    )
    body = head.encode() + track.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(
        f"{base}/jobs/new/",
        data=body,
        headers={
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Cookie": f"sessionid={session}; csrftoken={CSRF}",
        },
    )

    class Stay(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    try:
        urllib.request.build_opener(Stay).open(request, timeout=120)
    except urllib.error.HTTPError as answer:
        if answer.code != 302:
            raise SystemExit(f"The upload was refused ({answer.code}): {answer.read()[:300]!r}") from None
        return answer.headers["Location"].strip("/").rsplit("/", 1)[-1]
    raise SystemExit("The upload was not redirected to its job.")


def post_export(base: str, session: str, job_id: str) -> None:
    """Ask for a mix without vocals, as the mixer's export button does."""
    body = urllib.parse.urlencode({"csrfmiddlewaretoken": CSRF, "output_format": "mp3", "gain_vocals": "0"})
    request = urllib.request.Request(
        f"{base}/jobs/{job_id}/exports/",
        data=body.encode(),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": f"sessionid={session}; csrftoken={CSRF}",
        },
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        if answer.status != 200:
            raise SystemExit(f"The export was refused ({answer.status}).")


def run_worker(site: Site) -> subprocess.CompletedProcess:
    worker = subprocess.run(
        [sys.executable, "manage.py", "rqworker", "--burst", "separations", "short"],
        cwd=ROOT, env=site.env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if worker.returncode:
        raise SystemExit(f"The worker failed:\n{worker.stderr[-3000:]}")
    return worker


def trace_of(receiver: OtlpReceiver, attribute: str, value: str, last: str) -> list:
    """The trace whose spans carry `attribute` = `value`, once its span named `last` arrived."""
    deadline = time.monotonic() + 30
    spans = []
    while time.monotonic() < deadline:
        tagged = [s for s in receiver.received() if s.attributes.get(attribute) == value]
        spans = receiver.trace(tagged[0].trace_id) if tagged else []
        if any(span.name == last for span in spans):
            break
        time.sleep(0.2)
    return spans


def show(title: str, spans: list, redis: bool) -> None:
    if not redis:
        spans = [span for span in spans if span.attributes.get("db.system") != "redis"]
    print(f"{title}, trace {spans[0].trace_id if spans else '-'} ({len(spans)} spans shown):\n")
    print(span_tree(spans) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="length of the uploaded track")
    parser.add_argument("--redis", action="store_true", help="show the Redis commands' spans too")
    parser.add_argument("--json", type=Path, help="also write the trace's spans to this file")
    parser.add_argument("--log", action="store_true", help="also print the worker's log lines about the job")
    parser.add_argument(
        "--export", action="store_true", help="then export a mix of the stems, and print its trace"
    )
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="stemsite-trace-") as tmp, OtlpReceiver() as receiver:
        work = Path(tmp)
        from jobs.engine.testmodel import write_model

        write_model(work / "models", "htdemucs", size="tiny")
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_TRACES_SAMPLER": "always_on",
            "OTEL_BSP_SCHEDULE_DELAY": "200",
            "STEMSITE_MODEL_REPO": str(work / "models"),
            "STEMSITE_MODEL": "htdemucs",
            "STEMSITE_ENGINE": "torch",
        }
        with Site("sqlite", work, "trace", args.redis_url, env) as site:
            from django.contrib.auth import get_user_model

            user = get_user_model().objects.create_user("listener", password="!")
            session = session_key(user)
            base = site.start(free_port())
            job_id = upload(base, session, make_track(work / "Song.wav", args.seconds))
            worker = run_worker(site)
            spans = trace_of(receiver, "stemsite.job.id", job_id, "separation")
            export = []
            if args.export:
                post_export(base, session, job_id)
                from jobs.models import MixExport

                export_id = str(MixExport.objects.get(job_id=job_id).pk)
                run_worker(site)
                export = trace_of(receiver, "stemsite.export.id", export_id, "mix export")
    show(f"The upload of job {job_id}", spans, args.redis)
    if args.export:
        show("Its mix export", export, args.redis)
    if args.json:
        args.json.write_text(json.dumps([span.__dict__ for span in spans], indent=1))
    if args.log:
        print("\nThe worker's log lines about the job:\n")
        print("\n".join(line for line in worker.stderr.splitlines() if job_id in line))


if __name__ == "__main__":
    main()
