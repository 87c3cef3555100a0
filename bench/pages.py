"""Job list latency under 50 concurrent signed-in users, on SQLite and on PostgreSQL.

Run from the repository root (Redis and PostgreSQL running, as for the tests; nginx installed
from Debian's packages for the production layout):

    .venv/bin/python bench/pages.py                          # both databases, about 3 minutes
    .venv/bin/python bench/pages.py --database sqlite --layout both   # one daphne, then nginx + 2
    .venv/bin/python bench/pages.py --database postgres --seconds 60
    .venv/bin/python bench/pages.py --users 100 --think 2

The site runs as in production: by default (--layout nginx) the README's production layout,
--daphnes daphne processes (one per core) behind nginx with keep-alive upstream connections
(bench/live_site.py writes its configuration); --layout single is one daphne as the Procfile
starts it, --layout both runs each in turn on the same data. DEBUG off, a SECRET_KEY,
STEMSITE_HTTPS=false (plain HTTP on 127.0.0.1), Redis database 12 (--redis-url), and a database
of its own (a SQLite file in a temporary folder, or the PostgreSQL database stemsite_bench_pages,
created and dropped here). Each user owns 30-50 jobs made with the ORM (mostly succeeded with four
stem rows, some failed or canceled; no separation runs) and has a logged-in session cookie.

Load model, two phases after one warm-up request per user:
  think time: each user requests the job list (`job_list`, /), reads the whole answer, thinks for
              a random 0.5-1.5 x --think seconds, and repeats: people reading a page.
  closed loop: the same users with no think time: the saturation throughput of one daphne process.
Latency is measured by the client, from sending the request to the last byte of the answer, on the
same machine as the server (the clients' CPU time is shared with it). An answer counts as an error
unless it is a 200 listing that user's jobs (the first STEMSITE_JOBS_PER_PAGE of them). Server CPU
per request is the daphne processes' user + system time over the phase divided by its requests;
nginx's is shown beside it. Targets: p99 under 50 ms with think time, daphne CPU under 5 ms per
request. The machine's load average is printed with every phase: on a shared machine the
latencies are inflated, so compare layouts and runs made at the same load.
Not part of the test suite.
"""

import argparse
import asyncio
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
from live_site import DEFAULT_REDIS_URL, Site, free_port, machine_load, session_key

DB_NAME = "stemsite_bench_pages"
ROW = re.compile(rb'<tr id="job-[0-9a-f-]+-row"')
TARGET_P99_MS = 50
TARGET_CPU_MS = 5


def make_users(count: int, jobs_min: int, jobs_max: int, seed: int = 0) -> list[tuple[str, int]]:
    """`count` users with their jobs and stems; returns (session key, number of jobs) per user."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from jobs.models import Job, Stem
    from jobs.options import FOUR_STEMS, JobOptions

    rng = random.Random(seed)
    now = timezone.now()
    users = get_user_model().objects.bulk_create(
        [get_user_model()(username=f"bench-{i}", password="!") for i in range(count)]
    )
    users = list(get_user_model().objects.filter(username__startswith="bench-").order_by("pk"))
    jobs, stems = [], []
    options = [
        JobOptions().as_dict(),
        JobOptions(quality="best").as_dict(),
        JobOptions(two_stems="vocals").as_dict(),
    ]
    for user in users:
        for i in range(rng.randint(jobs_min, jobs_max)):
            status = rng.choices(["succeeded", "failed", "canceled"], [85, 10, 5])[0]
            created = now - timedelta(days=rng.uniform(0, 30))
            job = Job(
                owner=user, original_name=f"Song number {i} (live at the bench).mp3",
                input_file=f"jobs/x/input/song-{i}.mp3", model_name="htdemucs", options=rng.choice(options),
                status=status, progress=100 if status == "succeeded" else rng.randint(0, 99),
                error_message="The file could not be decoded." if status == "failed" else "",
                duration_seconds=rng.uniform(120, 360), input_size=rng.randint(3, 12) * 2**20,
                created_at=created, queued_at=created, started_at=created,
                finished_at=created + timedelta(minutes=3),
            )  # fmt: skip
            jobs.append(job)
            if status == "succeeded":
                stems += [
                    Stem(
                        job=job, name=name, position=p, file=f"jobs/{job.pk}/stems/{name}.mp3", size=9 * 2**20
                    )
                    for p, name in enumerate(FOUR_STEMS)
                ]
    Job.objects.bulk_create(jobs, batch_size=500)
    Stem.objects.bulk_create(stems, batch_size=500)
    counts = {user.pk: 0 for user in users}
    for job in jobs:
        counts[job.owner_id] += 1
    return [(session_key(user), counts[user.pk]) for user in users]


async def run_phase(base: str, users: list[tuple[str, int]], seconds: float, think: float) -> dict:
    """Every user in a loop for `seconds`; returns latencies (s), errors and requests per second."""
    import aiohttp
    from django.conf import settings

    latencies: list[float] = []
    errors: list[str] = []
    timeout = aiohttp.ClientTimeout(total=30)

    async def user_loop(session_id: str, jobs: int, deadline: float) -> None:
        connector = aiohttp.TCPConnector(limit=1)  # one keep-alive connection per user, like a browser tab
        cookies = {"sessionid": session_id}
        async with aiohttp.ClientSession(base, connector=connector, cookies=cookies, timeout=timeout) as http:
            if think:
                await asyncio.sleep(random.uniform(0, think))  # users do not arrive in step
            while time.monotonic() < deadline:
                started = time.perf_counter()
                try:
                    async with http.get("/", allow_redirects=False) as response:
                        body = await response.read()
                    elapsed = time.perf_counter() - started
                    if response.status != 200:
                        errors.append(f"status {response.status}")
                    elif len(ROW.findall(body)) != min(jobs, settings.STEMSITE_JOBS_PER_PAGE):
                        errors.append(f"{len(ROW.findall(body))} rows for {jobs} jobs")
                    else:
                        latencies.append(elapsed)
                except (aiohttp.ClientError, TimeoutError) as error:
                    errors.append(repr(error))
                if think:
                    await asyncio.sleep(random.uniform(0.5 * think, 1.5 * think))

    started = time.monotonic()
    await asyncio.gather(*(user_loop(key, jobs, started + seconds) for key, jobs in users))
    wall = time.monotonic() - started
    return {"latencies": latencies, "errors": errors, "wall": wall}


def summarise(name: str, result: dict, cpu_seconds: float) -> dict:
    ms = np.array(result["latencies"]) * 1000
    done = len(ms) + len(result["errors"])
    row = {"phase": name, "requests": done, "errors": len(result["errors"]), "rps": done / result["wall"]}
    for q in (50, 90, 99):
        row[f"p{q}"] = float(np.percentile(ms, q)) if len(ms) else float("nan")
    row["max"] = float(ms.max()) if len(ms) else float("nan")
    row["server_cpu_ms"] = 1000 * cpu_seconds[0] / done if done else float("nan")
    row["proxy_cpu_ms"] = 1000 * cpu_seconds[1] / done if done else float("nan")
    row["load"] = os.getloadavg()[0]
    if result["errors"]:
        row["first_errors"] = sorted(set(result["errors"]))[:3]
    return row


def print_rows(rows: list[dict]) -> None:
    header = (f"{'database':9s} {'layout':9s} {'phase':12s} {'requests':>8s} {'errors':>6s} {'req/s':>7s} "
              f"{'p50 ms':>7s} {'p90 ms':>7s} {'p99 ms':>7s} {'max ms':>7s} {'daphne CPU ms/req':>17s} "
              f"{'nginx':>6s} {'load':>5s}")  # fmt: skip
    print(f"\n{header}\n{'-' * len(header)}")
    for row in rows:
        print(f"{row['database']:9s} {row['layout']:9s} {row['phase']:12s} {row['requests']:8d} "
              f"{row['errors']:6d} {row['rps']:7.1f} {row['p50']:7.1f} {row['p90']:7.1f} {row['p99']:7.1f} "
              f"{row['max']:7.1f} {row['server_cpu_ms']:17.2f} {row['proxy_cpu_ms']:6.2f} "
              f"{row['load']:5.2f}")  # fmt: skip
        for error in row.get("first_errors", []):
            print(f"    error: {error}")


def bench(args, database: str) -> list[dict]:
    with (
        tempfile.TemporaryDirectory(prefix="stemsite-bench-pages-") as tmp,
        Site(database, Path(tmp), DB_NAME, args.redis_url) as site,
    ):
        started = time.monotonic()
        users = make_users(args.users, args.jobs_min, args.jobs_max)
        print(f"{database}: {args.users} users, {sum(j for _, j in users)} jobs made in "
              f"{time.monotonic() - started:.1f} s", flush=True)  # fmt: skip
        rows = []
        layouts = ["single", "nginx"] if args.layout == "both" else [args.layout]
        for layout in layouts:
            base = site.start(args.port or free_port(), daphnes=args.daphnes, nginx=layout == "nginx")
            name = layout if layout == "single" else f"nginx+{args.daphnes}"
            asyncio.run(run_phase(base, users, 0, 0))  # warm-up: one request per user
            asyncio.run(run_phase(base, users, 0, 0))  # and one through each daphne behind nginx
            for phase, seconds, think in (
                ("think time", args.seconds, args.think),
                ("closed loop", args.closed_seconds, 0),
            ):
                cpu = site.server_cpu_seconds(), site.proxy_cpu_seconds()
                print(f"{database} {name}: {phase} for {seconds:g} s ({machine_load()})", flush=True)
                profilers = (
                    site.profile(args.profile, f"{database}-{layout}-{phase}", seconds) if think else []
                )
                result = asyncio.run(run_phase(base, users, seconds, think))
                for profiler in profilers:
                    profiler.wait()
                used = site.server_cpu_seconds() - cpu[0], site.proxy_cpu_seconds() - cpu[1]
                rows.append({"database": database, "layout": name, **summarise(phase, result, used)})
            site.stop()
        return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--jobs-min", type=int, default=30)
    parser.add_argument("--jobs-max", type=int, default=50)
    parser.add_argument("--think", type=float, default=1.0, help="mean think time in seconds")
    parser.add_argument("--seconds", type=float, default=40, help="length of the think-time phase")
    parser.add_argument("--closed-seconds", type=float, default=15, help="length of the closed-loop phase")
    parser.add_argument("--layout", choices=["nginx", "single", "both"], default="nginx")
    parser.add_argument(
        "--daphnes", type=int, default=os.cpu_count(), help="behind nginx (default: one per core)"
    )
    parser.add_argument("--port", type=int, help="default: the first free one in 8100-8199")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--profile", type=Path, help="folder for py-spy profiles of the think-time phase")
    parser.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    print(f"stemsite job list: {args.users} users, 30-50 jobs each; {machine_load()}", flush=True)
    if args.database == "both":
        # Django is set up once per process, so each database gets a process of its own.
        rows = []
        for database in ("sqlite", "postgres"):
            with tempfile.NamedTemporaryFile(suffix=".json") as out:
                command = [
                    sys.executable,
                    __file__,
                    *sys.argv[1:],
                    "--database",
                    database,
                    "--json",
                    out.name,
                ]
                subprocess.run(command, check=True)
                rows += json.loads(Path(out.name).read_text())
    else:
        rows = bench(args, args.database)
        if args.json:
            args.json.write_text(json.dumps(rows))
            return
    print_rows(rows)
    think = [row for row in rows if row["phase"] == "think time"]
    verdict = ", ".join(
        f"{r['database']} {r['layout']} {'met' if r['p99'] < TARGET_P99_MS else 'MISSED'}" for r in think
    )
    print(f"\nTarget p99 < {TARGET_P99_MS} ms with think time: {verdict}.")
    verdict = ", ".join(
        f"{r['database']} {r['layout']} {'met' if r['server_cpu_ms'] < TARGET_CPU_MS else 'MISSED'}"
        for r in think
    )
    print(f"Target daphne CPU < {TARGET_CPU_MS} ms per request: {verdict}. {machine_load()}")


if __name__ == "__main__":
    main()
