"""Benchmark stemsite's separation engine against running `python -m demucs` by hand.

Run from the repository root:

    .venv/bin/python bench/separation.py --variants cli,full,half   # the whole report (below)
    .venv/bin/python bench/separation.py --size tiny --seconds 10 --rounds 2
    .venv/bin/python bench/separation.py --sections drift           # half vs full precision only
    .venv/bin/python bench/separation.py --device cuda              # adds the realtime factor
    .venv/bin/python bench/separation.py --variants cli,worker,openvino,stemsite,stock,bf16 --sections single
    .venv/bin/python bench/separation.py --profile                  # operators of one chunk, by time

It writes a deterministic 44.1 kHz stereo wav and a random-weight htdemucs (jobs.engine.testmodel), then
prints, by section (`--sections`, all by default):

- single: one `--seconds` track, round by round and interleaved: the demucs command line (a fresh
  process each time, like a user; wall clock and peak RSS from wait4) and each worker variant in a
  long-lived subprocess that loads the model once (each round times decode + separate + encoding
  the stems as wav, with the peak RSS of the process that did it). Stems are compared with the
  CLI's `--float32` wavs: SNR = 10 log10(sum ref^2 / sum (ref - x)^2), lowest stem.
- cold: the first job after a worker start at the site's default, and on the OpenVINO engine with
  its cache empty (the model is converted) and then warm, against one CLI run (which loads its
  model every time).
- batch: five 30 s tracks on one warm worker against five CLI runs (throughput in audio seconds
  per wall second).
- drift: half against full precision per stem on the stock random model and on a trained-like
  one (jobs.engine.testmodel.trained_like), and the SDR a half-precision stem would lose if the
  full-precision one were 9 dB SDR from the truth. Where the CPU has no native half precision,
  PyTorch's bf16 autocast stands in (slow, and labelled as such).

Worker variants: `full`, `half` and `openvino` run each track as the RQ worker does, in a process
forked from a parent that holds the model, with the site's engine (`auto`) at full or half
precision (PyTorch at full, OpenVINO at half), or OpenVINO forced at full; `worker` is PyTorch
forced, which `full` equals unless STEMSITE_ENGINE says otherwise. In-process, warm variants:
`stemsite` is jobs/engine/separation.py as it is in PyTorch; `stock` turns off both execution settings
(separate() then runs demucs' apply_model exactly as the CLI does); `no-malloc` leaves glibc's
allocator alone; `mha-fastpath` keeps torch's MHA fast path; `bf16` runs `stemsite` under bfloat16
autocast. `--profile` prints the operators
that take the time in one 7.8 s chunk instead. Not part of the test suite.
"""

import argparse
import json
import os
import resource
import shutil
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
# Worker variants: the SeparationOptions settings each one runs with.
WORKER_VARIANTS = {
    "full": {"engine": "auto", "precision": "full"},
    "half": {"engine": "auto", "precision": "half"},
    "openvino": {"engine": "openvino", "precision": "full"},
    "worker": {"engine": "torch"},
    "stemsite": {},
    "stock": {"keep_freed_memory": False, "fused_attention": False},
    "no-malloc": {"keep_freed_memory": False},
    "mha-fastpath": {"fused_attention": False},
    "bf16": {},  # stemsite under torch.autocast(bfloat16): faster, but not the CLI's stems
}
# These run as RQ runs jobs: a fresh process forked per track from a parent holding the model.
FORKED = {"full", "half", "openvino", "worker"}
SECTIONS = ("single", "cold", "batch", "drift")
# The published SDR of htdemucs on MUSDB18-HQ, rounded: the drift section's yardstick.
REFERENCE_SDR_DB = 9.0


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

    def __init__(self, variant: str, repo: Path, device: str, threads: int | None, env: dict, cache: Path):
        command = [sys.executable, __file__, "--child", variant, "--repo", str(repo), "--device", device,
                   "--cache", str(cache)]  # fmt: skip
        if threads:
            command += ["--threads", str(threads)]
        self.variant = variant
        self.process = subprocess.Popen(
            command, env=env, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit(f"worker {variant} failed to start")
        self.ready = json.loads(line)

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


def child(variant: str, repo: str, device: str, threads: int | None, cache: str) -> None:
    """Serve separations over stdin/stdout. The forked variants do what the RQ worker does: the
    parent loads the model single-threaded, gets the engine ready in a child (converting the model
    on the first start), then forks a fresh process per job. The other variants separate in this
    process, after one untimed warm-up."""
    import torch

    from jobs.engine import execution, openvino_runtime, separation

    forking = variant in FORKED
    settings = {"shifts": 0, "device": device, "engine_cache_dir": cache, **WORKER_VARIANTS[variant]}
    options = separation.SeparationOptions(**settings, threads=threads or len(os.sched_getaffinity(0)))
    torch.set_num_threads(1 if forking else threads or torch.get_num_threads())
    started = time.perf_counter()
    model = separation.load_model("htdemucs", repo)
    loaded = time.perf_counter() - started
    ready = {"load_seconds": loaded, "threads": torch.get_num_threads()}
    if forking:
        if options.engine != "torch" and openvino_runtime.installed():
            for network in execution.members(model):
                openvino_runtime.fingerprint(network)
        begun = time.perf_counter()
        prepared = in_fork(lambda: _prepare(model, options))
        ready.update(prepare_seconds=time.perf_counter() - begun, prepared=prepared)
        ready["prepare_maxrss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    precision = torch.autocast("cpu", dtype=torch.bfloat16, enabled=variant == "bf16")
    if not forking:
        with precision:
            separation.separate(model, np.zeros((2, RATE * 10), np.float32), RATE, options)  # warm-up
    print(json.dumps(ready), flush=True)
    for line in sys.stdin:
        job = json.loads(line)
        if forking:
            report = in_fork(lambda job=job: run_job(model, job, options, device, forked=True))
        else:
            with precision:
                report = run_job(model, job, options, device)
        print(json.dumps(report), flush=True)


def _prepare(model, options) -> dict:
    from jobs.engine import execution

    threads = options.threads
    return execution.prepare(model, options.engine, options.device, options.engine_cache_dir, threads)


def in_fork(function) -> dict:
    """`function()` in a forked child, as RQ's work horses run; its JSON result."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        os.write(write_end, json.dumps(function()).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        output = pipe.read()
    _, status = os.waitpid(pid, 0)
    if not output:
        raise SystemExit(f"a forked job failed ({os.waitstatus_to_exitcode(status)})")
    return json.loads(output)


def profile(repo: Path, threads: int | None) -> None:
    """Where one chunk's time goes: the warm model on 7.8 s of audio, operators by their own time."""
    import torch

    from jobs.engine import separation

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


def run_job(model, job: dict, options, device: str, forked: bool = False) -> dict:
    """Decode, separate and encode one track as a job does; the stems also go to .npy for the SNR."""
    import torch

    from jobs.engine import audio, separation

    if forked:
        torch.set_num_threads(options.threads)
    out = Path(job["out"])
    out.mkdir(parents=True, exist_ok=True)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    plan = separation.plan_execution(model, options)
    wav, rate = audio.decode(job["wav"], max_seconds=3600, timeout=600)
    begun = time.perf_counter()
    stems = separation.separate(model, wav, rate, options, plan=plan)
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
        "engine": f"{plan.engine} {plan.arithmetic}",
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


def start_workers(args, repo: Path, env: dict, cache: Path) -> dict[str, "Worker"]:
    return {v: Worker(v, repo, args.device, args.threads, env, cache) for v in args.variants if v != "cli"}


def single(args, repo: Path, work: Path, env: dict) -> list[dict]:
    wav = make_input(work / "input.wav", args.seconds)
    workers = start_workers(args, repo, env, work / "engine")
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
            engine = f" ({result['engine']})" if "engine" in result else ""
            seconds = result["seconds"]
            print(f"round {round_ + 1}/{args.rounds} {variant:12s} {seconds:7.2f} s{engine}", flush=True)
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


def cold_start(args, repo: Path, work: Path, env: dict) -> list[dict]:
    """The first job after a worker starts, at the site's default (full precision) and on the
    OpenVINO engine (half precision where the hardware has it, else OpenVINO at full), each with the
    engine cache empty and then warm. Where the hardware runs half precision, a worker at the site's
    default converts the model at start too: it gets every precision it offers ready."""
    wav = make_input(work / "cold.wav", args.seconds)
    cache = work / "engine-cold"
    cli = run_cli(repo, wav, work / "cold-cli", args.device, env)
    rows = [{"variant": "cli", "seconds": cli["seconds"], "prepare": 0.0, "maxrss_mb": cli["maxrss_mb"]}]
    converting = "half" if "half" in args.variants else "openvino"
    for variant, label in (("full", ", cache empty"), ("full", ", cache warm"), (converting, ", cache empty"),
                           (converting, ", cache warm")):  # fmt: skip
        if label.endswith("empty"):
            shutil.rmtree(cache, ignore_errors=True)
        started = time.perf_counter()
        worker = Worker(variant, repo, args.device, args.threads, env, cache)
        job = worker.separate(wav, work / f"cold-{variant}{label.split()[-1] if label else ''}")
        seconds = time.perf_counter() - started
        worker.close()
        ready = worker.ready
        rows.append({
            "variant": f"{variant}{label}", "seconds": seconds, "prepare": ready["prepare_seconds"],
            "maxrss_mb": max(job["maxrss_mb"], ready.get("prepare_maxrss_mb", 0)), "engine": job["engine"],
        })  # fmt: skip
        print(f"cold start, {variant}{label}: {seconds:.1f} s ({ready['prepare_seconds']:.1f} s getting the "
              f"engine ready, {job['engine']})", flush=True)  # fmt: skip
    size = sum(path.stat().st_size for path in cache.rglob("*") if path.is_file())
    print(f"engine cache on disk after one model: {size / 2**20:.0f} MB in {cache}")
    return rows


def print_cold(rows: list[dict]) -> None:
    header = f"{'start':26s} {'to first stems s':>17s} {'engine ready s':>15s} {'x CLI':>7s}"
    header += f" {'peak RSS MB':>12s}"
    title = "Cold start: worker start to the first job's stems (CLI: one run)"
    print(f"\n{title}\n{header}\n{'-' * len(header)}")
    cli = rows[0]["seconds"]
    for row in rows:
        ratio = row["seconds"] / cli
        print(f"{row['variant']:26s} {row['seconds']:17.1f} {row['prepare']:15.1f} {ratio:7.2f} "
              f"{row['maxrss_mb']:12.0f}")  # fmt: skip


def batch(args, repo: Path, work: Path, env: dict) -> list[dict]:
    tracks = [make_input(work / f"track{i}.wav", 30, seed=i + 1) for i in range(5)]
    workers = start_workers(args, repo, env, work / "engine")
    results: dict[str, list[dict]] = {v: [] for v in args.variants}
    for round_ in range(args.batch_rounds):
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
            peak = max(r["maxrss_mb"] for r in runs)
            engine = runs[-1].get("engine", "")
            results[variant].append({"seconds": seconds, "maxrss_mb": peak, "engine": engine})
            rounds = f"{round_ + 1}/{args.batch_rounds}"
            print(f"round {rounds} {variant:12s} {seconds:7.2f} s for 5 x 30 s", flush=True)
    for worker in workers.values():
        worker.close()
    cli_median = statistics.median(r["seconds"] for r in results["cli"]) if "cli" in results else None
    rows = []
    for variant, runs in results.items():
        row = summarise(variant, runs, cli_median, {})
        row["throughput"] = 150 / row["median"]
        rows.append(row)
    return rows


def drift(args, work: Path) -> None:
    """Half against full precision, per stem, on the stock random model and a trained-like one.

    Half is what the site runs (`plan_execution` with precision half) where the hardware has it;
    elsewhere PyTorch's bf16 autocast on the CPU, the arithmetic OpenVINO's bf16 and CUDA's bf16
    autocast also use, emulated and slow (about 3 minutes a chunk of the full model on 2 cores).
    """
    import torch

    from jobs.engine import execution, separation
    from jobs.engine.testmodel import write_model

    native = execution.half_arithmetic(args.device)
    how = f"the site's half precision ({native})" if native else "PyTorch bf16 autocast, emulated"
    print(f"\nDrift of half precision: {how}; {args.drift_seconds:g} s of the test mix, one chunk")
    wav, _ = soundfile.read(make_input(work / "drift.wav", args.drift_seconds, seed=7), dtype="float32")
    threads = args.threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    full = separation.SeparationOptions(shifts=0, device=args.device, threads=threads)
    half = separation.SeparationOptions(shifts=0, device=args.device, threads=threads, precision="half",
                                        engine="auto", engine_cache_dir=str(work / "engine"))  # fmt: skip
    lost = f"SDR lost at {REFERENCE_SDR_DB:g} dB"
    header = f"{'model':14s} {'stem':8s} {'SNR half vs full dB':>20s} {lost:>17s}"
    print(f"{header}\n{'-' * len(header)}")
    for weights in ("random", "trained-like"):
        folder = work / f"models-{args.size}-{weights}"
        if not any(folder.glob("*.th")):
            write_model(folder, "htdemucs", size=args.size, weights=weights)
        model = separation.load_model("htdemucs", str(folder))
        plan = separation.plan_execution(model, half) if native else execution.Execution(
            model=model, device=args.device, engine=execution.PYTORCH, arithmetic="bf16"
        )  # fmt: skip
        reference = separation.separate(model, wav.T.copy(), RATE, full)
        estimate = separation.separate(model, wav.T.copy(), RATE, half, plan=plan)
        for stem, samples in reference.items():
            snr = snr_db(samples.numpy(), estimate[stem].numpy())
            print(f"{weights:14s} {stem:8s} {snr:20.1f} {sdr_lost(snr):17.4f}", flush=True)


def sdr_lost(snr: float, sdr: float = REFERENCE_SDR_DB) -> float:
    """dB of SDR a stem loses when drift at `snr` dB adds to an error already `sdr` dB below the
    signal (the two errors uncorrelated, so their powers add)."""
    return 10 * np.log10(1 + 10 ** ((sdr - snr) / 10))


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
        "engine": runs[-1].get("engine", ""),
    }


def print_table(rows: list[dict], title: str) -> None:
    extra = [key for key in ("throughput", "rtf") if any(key in row for row in rows)]
    header = f"{'variant':14s} {'min s':>8s} {'median s':>9s} {'x CLI':>7s} {'peak RSS MB':>12s}"
    header += f" {'min SNR dB':>11s}"
    header += "".join(f" {key:>11s}" for key in extra)
    header += f"  {'engine':16s}"
    print(f"\n{title}\n{header}\n{'-' * len(header)}")
    for row in rows:
        snr = "-" if row["min_snr"] is None else f"{row['min_snr']:.1f}"
        line = (f"{row['variant']:14s} {row['min']:8.2f} {row['median']:9.2f} {row['ratio']:7.3f} "
                f"{row['maxrss_mb']:12.0f} {snr:>11s}")  # fmt: skip
        line += "".join(f" {row[key]:11.2f}" if key in row else f" {'-':>11s}" for key in extra)
        line += f"  {row['engine'] or '-':16s}"
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--size", choices=["full", "tiny"], default="full")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-rounds", type=int, default=1, help="rounds of the five-track batch")
    parser.add_argument("--drift-seconds", type=float, default=5, help="audio for the drift section")
    parser.add_argument("--threads", type=int, help="torch threads in the worker, OMP_NUM_THREADS for both")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"any of {','.join(SECTIONS)}")
    parser.add_argument(
        "--variants", default="cli,full,half", help=f"cli and any of {','.join(WORKER_VARIANTS)}"
    )
    parser.add_argument("--work", type=Path, help="keep files here instead of a temporary folder")
    parser.add_argument("--profile", action="store_true", help="profile one chunk of the model, then stop")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--repo", help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.repo, args.device, args.threads, args.cache)
    args.variants = args.variants.split(",")
    sections = args.sections.split(",")
    unknown = (set(args.variants) - {"cli", *WORKER_VARIANTS}) | (set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown variants or sections: {', '.join(sorted(unknown))}")
    sys.path.insert(0, str(ROOT))
    from jobs.engine import execution
    from jobs.engine.testmodel import write_model

    if "half" in args.variants and execution.half_arithmetic(args.device) is None:
        print(f"half: not offered on this {args.device.upper()}, which has no native half precision "
              "(AVX512-BF16 or AMX on a CPU); its rows are left out")  # fmt: skip
        args.variants.remove("half")
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
        print(f"CPU: {cpu_name()}")
        if "single" in sections:
            rows = single(args, repo, work, env)
            print_table(rows, f"One {args.seconds:g} s track (x CLI = median / CLI median)")
        if "cold" in sections:
            print_cold(cold_start(args, repo, work, env))
        if "batch" in sections:
            rows = batch(args, repo, work, env)
            print_table(rows, "Five 30 s tracks (throughput = audio seconds per wall second)")
        if "drift" in sections:
            drift(args, work)


def cpu_name() -> str:
    """The CPU, with the instruction sets that decide the figures: AVX-512, and native bf16."""
    fields = {}
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = fields.get("flags", "").split()
    wanted = [flag for flag in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx512_fp16") if flag in flags]
    name = f"{fields.get('model name', 'unknown')} (family {fields.get('cpu family')})"
    return f"{name}, {len(os.sched_getaffinity(0))} cores, {' '.join(wanted)}"


if __name__ == "__main__":
    main()
