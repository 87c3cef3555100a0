"""Websocket push latency: from a worker's update of a job to 500 open job pages.

Run from the repository root (Redis running, as for the tests):

    .venv/bin/python bench/push.py                       # both scenarios, about a minute
    .venv/bin/python bench/push.py --scenario one-job --layout both   # one daphne, then nginx + 2
    .venv/bin/python bench/push.py --scenario one-job --updates 80
    .venv/bin/python bench/push.py --clients 200 --database postgres

The site runs as in production (bench/live_site.py): by default (--layout nginx) --daphnes daphne
processes (one per core) behind Debian's nginx with the websocket upgrade on /ws/, as the README's
production layout; --layout single is one daphne as the Procfile starts it; --layout both runs each
in turn. DEBUG off, a SECRET_KEY, Redis database 12 (--redis-url) as channel layer, a SQLite file
or the PostgreSQL database stemsite_bench_pages. Each client is a websocket on a job's page
(/ws/jobs/<id>/) with a logged-in session cookie and the site's Origin, as a browser tab opens it.
Two scenarios:
  one-job:  500 tabs of one owner on one running job; the worker advances its progress
            --updates times, one step per STEMSITE_PROGRESS_INTERVAL (0.25 s), then finishes it.
  own-jobs: 500 users each on their own running job; each round the worker advances every job
            once, then (--rounds rounds later) finishes each.
The "worker" is a separate process that does what jobs/background/tasks.py does for each change:
`job.set_progress(p)` (or `mark_succeeded()`) then `publish_job_state(job)`, stamping the time
(time.monotonic, one clock for all processes on the machine) just before the database write.
Each client stamps the arrival of every message and reads which update it shows (the progress
or the final status). Latency = arrival - stamp, per (update, client); an update a client never
shows is lost. Sockets also re-read their job every STEMSITE_SOCKET_RESYNC_SECONDS (10 s), as
in production: such re-sends count as duplicates, or as deliveries if they come first.
Clients, server, Redis and worker share this machine's CPUs, so the load average is printed with
each scenario: on a shared machine compare layouts and runs made at the same load. Target: p99
under 100 ms.
Not part of the test suite.
"""

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from live_site import DEFAULT_REDIS_URL, Site, free_port, machine_load, session_key

DB_NAME = "stemsite_bench_pages"
TARGET_P99_MS = 100
STATUS = re.compile(r'id="job-([0-9a-f-]+)-status"[^>]*data-status="(\w+)"')
PERCENT = re.compile(r'class="percent">(\d+)%')
FINAL = "succeeded"


# ---- the worker side, in a process of its own ----


def worker(plan_path: str) -> None:
    """Apply the plan's rounds of updates as jobs/background/tasks.py does; print every stamp as JSON."""
    import django

    django.setup()
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from jobs.models import Job
    from jobs.realtime.events import EVENT_TYPE, publish_job_state
    from jobs.realtime.fragments import job_status_html

    plan = json.loads(Path(plan_path).read_text())
    jobs = [Job.objects.select_related("owner").get(pk=pk) for pk in plan["jobs"]]
    # Warm up as a worker that has run before: templates compiled, a channel layer connection.
    job_status_html(jobs[0])
    async_to_sync(get_channel_layer().group_send)("bench-warm-up", {"type": EVENT_TYPE, "html": ""})
    stamps = []
    for round_ in range(1, plan["rounds"] + 2):
        started = time.monotonic()
        for job in jobs:
            stamp = time.monotonic()
            changed = job.mark_succeeded() if round_ > plan["rounds"] else job.set_progress(round_)
            if not changed:
                raise SystemExit(f"job {job.pk} did not take update {round_}")
            publish_job_state(job)
            tag = FINAL if round_ > plan["rounds"] else str(round_)
            stamps.append([str(job.pk), tag, stamp, time.monotonic() - stamp])
        time.sleep(max(0.0, plan["interval"] - (time.monotonic() - started)))
    print(json.dumps(stamps))


# ---- the browsers' side ----


class Tab:
    """One open job page: what arrived, when."""

    def __init__(self, job_id: str, session: str):
        self.job_id, self.session = job_id, session
        self.arrivals: dict[str, float] = {}
        self.messages = 0
        self.done = asyncio.Event()

    def read(self, text: str, now: float) -> None:
        self.messages += 1
        for job_id, status in STATUS.findall(text):
            if job_id != self.job_id:
                continue
            percent = PERCENT.search(text)
            tag = (
                FINAL if status == FINAL else (percent.group(1) if percent and status == "running" else None)
            )
            if tag is not None:
                self.arrivals.setdefault(tag, now)
            if status == FINAL:
                self.done.set()


async def watch(http, base: str, tab: Tab, connected: asyncio.Event, gate: asyncio.Semaphore, errors: list):
    import aiohttp

    url = base.replace("http://", "ws://") + f"/ws/jobs/{tab.job_id}/"
    headers = {"Origin": base, "Cookie": f"sessionid={tab.session}"}
    try:
        async with gate:
            socket = await http.ws_connect(url, headers=headers, heartbeat=None, max_msg_size=0)
            first = await socket.receive(timeout=60)  # the catch-up state, sent on connect
        if first.type != aiohttp.WSMsgType.TEXT:
            errors.append(f"socket closed on connect: {first.type.name} {first.data}")
            return
        connected.set()
        async with socket:
            async for message in socket:
                if message.type == aiohttp.WSMsgType.TEXT:
                    tab.read(message.data, time.monotonic())
                if tab.done.is_set():
                    return
            errors.append(f"socket closed: {socket.close_code}")
    except (aiohttp.ClientError, TimeoutError) as error:
        errors.append(repr(error))
    finally:
        tab.done.set()


async def run_scenario(site: Site, base: str, name: str, tabs: list[Tab], jobs: list[str], args) -> dict:
    import aiohttp

    errors: list[str] = []
    gate = asyncio.Semaphore(50)  # connecting: 50 at a time, as a crowd arriving
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        started = time.monotonic()
        events = [asyncio.Event() for _ in tabs]
        tasks = [
            asyncio.create_task(watch(http, base, tab, event, gate, errors))
            for tab, event in zip(tabs, events, strict=True)
        ]
        while not all(e.is_set() or t.done() for e, t in zip(events, tasks, strict=True)):
            await asyncio.sleep(0.05)
        connect_seconds = time.monotonic() - started
        rounds = args.updates if name == "one-job" else args.rounds
        plan = site.work / "plan.json"
        plan.write_text(json.dumps({"jobs": jobs, "rounds": rounds, "interval": args.interval}))
        cpu = site.server_cpu_seconds()
        profilers = site.profile(args.profile, name)
        process = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--worker", str(plan), env=site.env, stdout=subprocess.PIPE
        )
        out, _ = await process.communicate()
        if process.returncode:
            raise SystemExit(f"worker failed ({process.returncode})")
        cpu = site.server_cpu_seconds() - cpu
        for profiler in profilers:
            profiler.send_signal(signal.SIGINT)  # py-spy writes its profile when interrupted
            profiler.wait()
        # Pushed messages are in flight for milliseconds; give stragglers 5 s (under the resync interval).
        try:
            async with asyncio.timeout(5):
                await asyncio.gather(*(tab.done.wait() for tab in tabs))
        except TimeoutError:
            pass
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {"stamps": json.loads(out), "errors": errors, "connect_seconds": connect_seconds, "cpu": cpu}


def summarise(name: str, tabs: list[Tab], result: dict) -> dict:
    by_job: dict[str, list[Tab]] = {}
    for tab in tabs:
        by_job.setdefault(tab.job_id, []).append(tab)
    latencies, lost, slowest = [], 0, []
    for job_id, tag, stamp, _ in result["stamps"]:
        these = [tab.arrivals[tag] - stamp for tab in by_job[job_id] if tag in tab.arrivals]
        lost += len(by_job[job_id]) - len(these)
        latencies += these
        if these:
            slowest.append((max(these), tag))
    ms = np.array(latencies) * 1000
    publish_ms = np.array([s[3] for s in result["stamps"]]) * 1000
    expected = sum(len(by_job[s[0]]) for s in result["stamps"])
    row = {
        "scenario": name, "clients": len(tabs), "updates": len(result["stamps"]), "expected": expected,
        "lost": lost, "socket_errors": len(result["errors"]), "connect_s": result["connect_seconds"],
        "cpu_per_update": 1000 * result["cpu"] / max(1, len(result["stamps"])),
        "messages": sum(tab.messages for tab in tabs), "publish_p50": float(np.percentile(publish_ms, 50)),
        "publish_max": float(publish_ms.max()),
    }  # fmt: skip
    for q in (50, 90, 99):
        row[f"p{q}"] = float(np.percentile(ms, q)) if len(ms) else float("nan")
    row["max"] = float(ms.max()) if len(ms) else float("nan")
    row["slowest"] = ", ".join(
        f"update {tag} {1000 * late:.0f} ms" for late, tag in sorted(slowest)[-3:][::-1]
    )
    if result["errors"]:
        row["first_errors"] = sorted(set(result["errors"]))[:3]
    return row


def make_scenario(name: str, clients: int, prefix: str = "") -> tuple[list[Tab], list[str]]:
    """Users, running jobs and sessions for a scenario; returns the tabs and the jobs to update."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from jobs.models import Job
    from jobs.options import JobOptions

    users_model = get_user_model()
    count = 1 if name == "one-job" else clients
    users = [users_model(username=f"{prefix}{name}-{i}", password="!") for i in range(count)]
    users_model.objects.bulk_create(users)
    users = list(users_model.objects.filter(username__startswith=f"{prefix}{name}-").order_by("pk"))
    now = timezone.now()
    jobs = [
        Job(
            owner=user,
            original_name=f"{user.username}.mp3",
            input_file=f"jobs/x/input/{user.username}.mp3",
            model_name="htdemucs",
            options=JobOptions().as_dict(),
            status=Job.Status.RUNNING,
            duration_seconds=240,
            created_at=now,
            queued_at=now,
            started_at=now,
        )  # fmt: skip
        for user in users
    ]
    Job.objects.bulk_create(jobs)
    if name == "one-job":
        tabs = [Tab(str(jobs[0].pk), session_key(users[0])) for _ in range(clients)]
    else:
        tabs = [Tab(str(job.pk), session_key(user)) for job, user in zip(jobs, users, strict=True)]
    return tabs, [str(job.pk) for job in jobs]


def print_rows(rows: list[dict]) -> None:
    header = (f"{'layout':8s} {'scenario':9s} {'clients':>7s} {'updates':>7s} {'expected':>8s} {'lost':>5s} "
              f"{'p50 ms':>7s} {'p90 ms':>7s} {'p99 ms':>7s} {'max ms':>7s} "
              f"{'publish p50/max ms':>19s} {'daphne CPU ms/update':>20s} {'load':>5s}")  # fmt: skip
    print(f"\n{header}\n{'-' * len(header)}")
    for r in rows:
        print(f"{r['layout']:8s} {r['scenario']:9s} {r['clients']:7d} {r['updates']:7d} {r['expected']:8d} "
              f"{r['lost']:5d} {r['p50']:7.1f} {r['p90']:7.1f} {r['p99']:7.1f} {r['max']:7.1f} "
              f"{r['publish_p50']:9.1f}/{r['publish_max']:<9.1f} {r['cpu_per_update']:20.1f} "
              f"{r['load']:5.2f}")  # fmt: skip
        print(f"    {r['messages']} messages after the catch-up (pushes and resync re-sends); "
              f"{r['socket_errors']} socket errors; {r['connect_s']:.1f} s to connect them all")  # fmt: skip
        print(f"    slowest updates to reach their last client: {r['slowest']}")
        for error in r.get("first_errors", []):
            print(f"    error: {error}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=["one-job", "own-jobs", "both"], default="both")
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--updates", type=int, default=40, help="progress steps in one-job")
    parser.add_argument("--rounds", type=int, default=4, help="rounds over all jobs in own-jobs")
    parser.add_argument("--interval", type=float, default=0.25, help="seconds between a job's updates")
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--layout", choices=["nginx", "single", "both"], default="nginx")
    parser.add_argument(
        "--daphnes", type=int, default=os.cpu_count(), help="behind nginx (default: one per core)"
    )
    parser.add_argument("--port", type=int, help="default: the first free one in 8100-8199")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument(
        "--resync-seconds", help="STEMSITE_SOCKET_RESYNC_SECONDS for the server (default: the site's, 10)"
    )
    parser.add_argument(
        "--profile", type=Path, help="folder for py-spy profiles of daphne during the updates"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker)
    scenarios = ["one-job", "own-jobs"] if args.scenario == "both" else [args.scenario]
    print(f"stemsite push latency: {args.clients} clients, {args.database}; {machine_load()}", flush=True)
    rows = []
    extra = {"STEMSITE_SOCKET_RESYNC_SECONDS": args.resync_seconds} if args.resync_seconds else {}
    with (
        tempfile.TemporaryDirectory(prefix="stemsite-bench-push-") as tmp,
        Site(args.database, Path(tmp), DB_NAME, args.redis_url, extra) as site,
    ):
        layouts = ["single", "nginx"] if args.layout == "both" else [args.layout]
        for layout in layouts:
            base = site.start(args.port or free_port(), daphnes=args.daphnes, nginx=layout == "nginx")
            label = layout if layout == "single" else f"nginx+{args.daphnes}"
            for name in scenarios:
                tabs, jobs = make_scenario(name, args.clients, prefix=layout)
                print(
                    f"{label} {name}: connecting {len(tabs)} sockets, then updating ({machine_load()})",
                    flush=True,
                )
                result = asyncio.run(run_scenario(site, base, name, tabs, jobs, args))
                rows.append({**summarise(name, tabs, result), "layout": label, "load": os.getloadavg()[0]})
            site.stop()
    print_rows(rows)
    verdict = ", ".join(
        f"{r['layout']} {r['scenario']} {'met' if r['p99'] < TARGET_P99_MS and not r['lost'] else 'MISSED'}"
        for r in rows
    )
    print(f"\nTarget p99 < {TARGET_P99_MS} ms, nothing lost: {verdict}. {machine_load()}")


if __name__ == "__main__":
    main()
