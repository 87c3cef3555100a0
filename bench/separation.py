"""Benchmark stemsite's separation engine against running `python -m demucs` by hand.

Run from the repository root:

    .venv/bin/python bench/separation.py                       # 60 s clip, full-size model, 3 rounds
    .venv/bin/python bench/separation.py --size tiny --seconds 10 --rounds 2
    .venv/bin/python bench/separation.py --batch               # five 30 s tracks, one worker
    .venv/bin/python bench/separation.py --device cuda         # adds the realtime factor
    .venv/bin/python bench/separation.py --variants cli,stemsite,stock,no-malloc,mha-fastpath,bf16
    .venv/bin/python bench/separation.py --profile             # operators of one chunk, by time

It writes a deterministic 44.1 kHz stereo wav and a random-weight htdemucs (jobs.testmodel), then
runs, round by round and interleaved, the demucs command line (a fresh process each time, like a
user; wall clock and peak RSS from wait4) and stemsite's worker code in a long-lived subprocess
that loads the model once (each round times decode + `separate()` + encoding the four stems as
wav, and reports the peak RSS of the process that did it). Stems are
compared with the CLI's `--float32` wavs: SNR = 10 log10(sum ref^2 / sum (ref - x)^2) per stem.

Worker variants: `worker` runs each track as the RQ worker does, in a process forked from a parent
that holds the model (so it pays torch's first-call costs every time); `stemsite` is
jobs/separation.py as it is, in a warm process; `stock` turns off both execution
settings (separate() then runs demucs' apply_model exactly as the CLI does); `no-malloc` leaves
glibc's allocator alone; `mha-fastpath` keeps torch's MHA fast path; `bf16` runs `stemsite` under
bfloat16 autocast, to show what lower precision would buy and cost. `--profile` prints the
operators that take the time in one 7.8 s chunk instead. Not part of the test suite.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile

ROOT = Path(__file__).resolve().parent.parent
RATE = 44100
# Worker variants: the SeparationOptions execution settings each one runs with.
WORKER_VARIANTS = {
    "worker": {},
    "stemsite": {},
    "stock": {"keep_freed_memory": False, "fused_attention": False},
    "no-malloc": {"keep_freed_memory": False},
    "mha-fastpath": {"fused_attention": False},
    "bf16": {},  # stemsite under torch.autocast(bfloat16): faster, but not the CLI's stems
}


def make_input(path: Path, seconds: float, seed: int = 0) -> Path:
    """A deterministic stereo mix: chords of tones, noise bursts and a kick-like pulse."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    out = np.zeros((2, n))
    for i, freq in enumerate(rng.choice([110.0, 146.8, 196.0, 220.0, 293.7, 329.6, 440.0], 4, replace=False)):
        wobble = 1 + 0.003 * np.sin(2 * np.pi * (0.2 + 0.1 * i) * t)
        tone = np.sin(2 * np.pi * freq * t * wobble) * (0.5 + 0.5 * np.sin(2 * np.pi * 0.25 * t + i))
        out += 0.12 * tone * np.array([[1 - 0.2 * i], [0.4 + 0.2 * i]])
    beat = 0.5  # seconds between kicks: 120 bpm
    phase = t % beat
    out += 0.6 * np.sin(2 * np.pi * (50 + 120 * np.exp(-phase * 30)) * phase) * np.exp(-phase * 12)
    bursts = (np.floor(t / (beat / 2)) % 2 == 1) * np.exp(-(t % (beat / 2)) * 40)
    out += 0.15 * bursts * rng.standard_normal((2, n))
    out /= np.abs(out).max() / 0.9
    soundfile.write(path, out.T.astype(np.float32), RATE, subtype="PCM_16")
    return path


def read_float(path: Path) -> np.ndarray:
    data, _ = soundfile.read(path, dtype="float32", always_2d=True)
    return data.T


def snr_db(ref: np.ndarray, x: np.ndarray) -> float:
    ref64, x64 = ref.astype(np.float64), x.astype(np.float64)
    noise = float(((ref64 - x64) ** 2).sum())
    return float("inf") if noise == 0 else float(10 * np.log10((ref64**2).sum() / noise))


# ---- the demucs command line, a fresh process per run ----


def run_cli(repo: Path, wav: Path, out: Path, device: str, env: dict) -> dict:
    command = [sys.executable, "-m", "demucs", "--repo", str(repo), "-n", "htdemucs", "--shifts", "0",
               "--float32", "-d", device, "-o", str(out), str(wav)]  # fmt: skip
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"demucs CLI failed ({process.returncode}):\n{stderr.decode()[-3000:]}")
    return {"seconds": seconds, "maxrss_mb": usage.ru_maxrss / 1024, "stems": out / "htdemucs" / wav.stem}


# ---- stemsite's worker code, in a long-lived subprocess ----


class Worker:
    """`bench/separation.py --child`: loads the model once, then separates what it is sent."""

    def __init__(self, variant: str, repo: Path, device: str, threads: int | None, env: dict):
        command = [sys.executable, __file__, "--child", variant, "--repo", str(repo), "--device", device]
        if threads:
            command += ["--threads", str(threads)]
        self.variant = variant
        self.process = subprocess.Popen(
            command, env=env, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.ready = json.loads(self.process.stdout.readline())

    def separate(self, wav: Path, out: Path) -> dict:
        self.process.stdin.write(json.dumps({"wav": str(wav), "out": str(out)}) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit(f"worker {self.variant} died")
        return {**json.loads(line), "stems": out}

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


def child(variant: str, repo: str, device: str, threads: int | None) -> None:
    """Serve separations over stdin/stdout. `worker` does what the RQ worker does: the parent
    loads the model single-threaded and forks a fresh process per job. The other variants
    separate in this process, after one untimed warm-up."""
    import torch

    from jobs import separation

    forking = variant == "worker"
    options = separation.SeparationOptions(shifts=0, device=device, **WORKER_VARIANTS[variant])
    torch.set_num_threads(1 if forking else threads or torch.get_num_threads())
    started = time.perf_counter()
    model = separation.load_model("htdemucs", repo)
    loaded = time.perf_counter() - started
    precision = torch.autocast("cpu", dtype=torch.bfloat16, enabled=variant == "bf16")
    if not forking:
        with precision:
            separation.separate(model, np.zeros((2, RATE * 10), np.float32), RATE, options)  # warm-up
    print(json.dumps({"load_seconds": loaded, "threads": torch.get_num_threads()}), flush=True)
    for line in sys.stdin:
        job = json.loads(line)
        if not forking:
            with precision:
                print(json.dumps(run_job(model, job, options, device)), flush=True)
            continue
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            torch.set_num_threads(threads or len(os.sched_getaffinity(0)))
            report = run_job(model, job, options, device)
            os.write(write_end, json.dumps(report).encode())
            os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end) as pipe:
            report = pipe.read()
        os.waitpid(pid, 0)
        print(report, flush=True)


def profile(repo: Path, threads: int | None) -> None:
    """Where one chunk's time goes: the warm model on 7.8 s of audio, operators by their own time."""
    import torch

    from jobs import separation

    torch.set_num_threads(threads or torch.get_num_threads())
    separation.keep_freed_memory()
    model = separation.load_model("htdemucs", str(repo)).models[0]
    chunk = torch.randn(1, 2, int(model.segment * model.samplerate))
    with torch.inference_mode(), separation.fused_attention():
        model(chunk)  # warm-up
        started = time.perf_counter()
        model(chunk)
        print(f"one {float(model.segment):.1f} s chunk: {time.perf_counter() - started:.2f} s unprofiled")
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
            model(chunk)
    print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


def run_job(model, job: dict, options, device: str) -> dict:
    """Decode, separate and encode one track as a job does; the stems also go to .npy for the SNR."""
    import torch

    from jobs import audio, separation

    out = Path(job["out"])
    out.mkdir(parents=True, exist_ok=True)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    wav, rate = audio.decode(job["wav"], max_seconds=3600, timeout=600)
    begun = time.perf_counter()
    stems = separation.separate(model, wav, rate, options)
    separated = time.perf_counter() - begun
    for name, samples in stems.items():
        separation.encode(samples, out / f"{name}.wav", model.samplerate)
    seconds = time.perf_counter() - started
    for name, samples in stems.items():
        np.save(out / f"{name}.npy", samples.numpy())
    report = {
        "seconds": seconds,
        "separate_seconds": separated,
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if device == "cuda":
        report["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return report


# ---- driving and reporting ----


def compare(cli_stems: Path, worker_stems: Path) -> dict[str, float]:
    return {
        path.stem: snr_db(read_float(path), np.load(worker_stems / f"{path.stem}.npy"))
        for path in sorted(cli_stems.glob("*.wav"))
    }


def single(args, repo: Path, work: Path, env: dict) -> list[dict]:
    wav = make_input(work / "input.wav", args.seconds)
    workers = {v: Worker(v, repo, args.device, args.threads, env) for v in args.variants if v != "cli"}
    results: dict[str, list[dict]] = {v: [] for v in args.variants}
    cli_stems = None
    for round_ in range(args.rounds):
        for variant in args.variants:
            out = work / f"r{round_}-{variant}"
            if variant == "cli":
                result = run_cli(repo, wav, out, args.device, env)
                cli_stems = cli_stems or result["stems"]
            else:
                result = workers[variant].separate(wav, out)
            results[variant].append(result)
            print(f"round {round_ + 1}/{args.rounds} {variant:12s} {result['seconds']:7.2f} s", flush=True)
    for worker in workers.values():
        worker.close()
    rows = []
    cli_median = statistics.median(r["seconds"] for r in results["cli"]) if "cli" in results else None
    for variant, runs in results.items():
        snrs = compare(cli_stems, runs[-1]["stems"]) if cli_stems and variant != "cli" else {}
        row = summarise(variant, runs, cli_median, snrs)
        if args.device == "cuda" and variant != "cli":
            row["rtf"] = args.seconds / min(r["separate_seconds"] for r in runs)
        rows.append(row)
        if snrs:
            print(f"SNR vs CLI, {variant}: " + ", ".join(f"{k} {v:.1f} dB" for k, v in snrs.items()))
    return rows


def batch(args, repo: Path, work: Path, env: dict) -> list[dict]:
    tracks = [make_input(work / f"track{i}.wav", 30, seed=i + 1) for i in range(5)]
    workers = {v: Worker(v, repo, args.device, args.threads, env) for v in args.variants if v != "cli"}
    results: dict[str, list[dict]] = {v: [] for v in args.variants}
    for round_ in range(args.rounds):
        for variant in args.variants:
            started = time.perf_counter()
            runs = []
            for i, track in enumerate(tracks):
                out = work / f"b{round_}-{variant}-{i}"
                if variant == "cli":
                    runs.append(run_cli(repo, track, out, args.device, env))
                else:
                    runs.append(workers[variant].separate(track, out))
            seconds = time.perf_counter() - started
            results[variant].append({"seconds": seconds, "maxrss_mb": max(r["maxrss_mb"] for r in runs)})
            print(f"round {round_ + 1}/{args.rounds} {variant:12s} {seconds:7.2f} s for 5 x 30 s", flush=True)
    for worker in workers.values():
        worker.close()
    cli_median = statistics.median(r["seconds"] for r in results["cli"]) if "cli" in results else None
    rows = []
    for variant, runs in results.items():
        row = summarise(variant, runs, cli_median, {})
        row["throughput"] = 150 / row["median"]
        rows.append(row)
    return rows


def summarise(variant: str, runs: list[dict], cli_median: float | None, snrs: dict) -> dict:
    times = [r["seconds"] for r in runs]
    median = statistics.median(times)
    return {
        "variant": variant,
        "min": min(times),
        "median": median,
        "ratio": median / cli_median if cli_median else float("nan"),
        "maxrss_mb": max(r["maxrss_mb"] for r in runs),
        "min_snr": min(snrs.values()) if snrs else None,
    }


def print_table(rows: list[dict], title: str) -> None:
    extra = [key for key in ("throughput", "rtf") if any(key in row for row in rows)]
    header = f"{'variant':14s} {'min s':>8s} {'median s':>9s} {'x CLI':>7s} {'peak RSS MB':>12s}"
    header += f" {'min SNR dB':>11s}"
    header += "".join(f" {key:>11s}" for key in extra)
    print(f"\n{title}\n{header}\n{'-' * len(header)}")
    for row in rows:
        snr = "-" if row["min_snr"] is None else f"{row['min_snr']:.1f}"
        line = (f"{row['variant']:14s} {row['min']:8.2f} {row['median']:9.2f} {row['ratio']:7.3f} "
                f"{row['maxrss_mb']:12.0f} {snr:>11s}")  # fmt: skip
        line += "".join(f" {row[key]:11.2f}" if key in row else f" {'-':>11s}" for key in extra)
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--size", choices=["full", "tiny"], default="full")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch threads in the worker, OMP_NUM_THREADS for both")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--batch", action="store_true", help="five 30 s tracks: one warm worker vs 5 CLI runs"
    )
    parser.add_argument(
        "--variants", default="cli,worker", help=f"cli and any of {','.join(WORKER_VARIANTS)}"
    )
    parser.add_argument("--work", type=Path, help="keep files here instead of a temporary folder")
    parser.add_argument("--profile", action="store_true", help="profile one chunk of the model, then stop")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--repo", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.repo, args.device, args.threads)
    args.variants = args.variants.split(",")
    unknown = set(args.variants) - {"cli", *WORKER_VARIANTS}
    if unknown:
        parser.error(f"unknown variants: {', '.join(sorted(unknown))}")
    sys.path.insert(0, str(ROOT))
    from jobs.testmodel import write_model

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    with tempfile.TemporaryDirectory(prefix="stemsite-bench-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        repo = work / f"models-{args.size}"
        if not any(repo.glob("*.th")):
            write_model(repo, "htdemucs", size=args.size)
        if args.profile:
            return profile(repo, args.threads)
        print(f"{args.size} htdemucs, device {args.device}, {args.rounds} rounds, variants {args.variants}")
        if args.batch:
            rows = batch(args, repo, work, env)
            print_table(rows, "Five 30 s tracks (throughput = audio seconds per wall second)")
        else:
            rows = single(args, repo, work, env)
            print_table(rows, f"One {args.seconds:g} s track (x CLI = median / CLI median)")


if __name__ == "__main__":
    main()
