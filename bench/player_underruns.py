"""Does the practice player keep up? Six stems through the stretch in headless Chromium, counted.

Run from the repository root (Redis must answer at --redis-url):

    .venv/bin/python bench/player_underruns.py                  # 6 stems, 85% tempo, -2 semitones, 30 s
    .venv/bin/python bench/player_underruns.py --tempo 60 --seconds 20

It makes a six-stem job (synthetic 320 kbit/s MP3 stems: tones, noise bursts and clicks), starts the
site with bench/live_site.py, opens the job page in headless Chromium (/usr/bin/chromium), sets the
tempo and pitch, plays for --seconds and prints, each second and in total:

- underruns: Chromium's own count of audio the output asked for and did not get in time
  (AudioContext.playbackStats: underrunEvents, underrunDuration; Chromium 129+);
- the audio clock against the wall clock (a render thread that cannot keep up falls behind);
- the CPU time Chromium's processes used, as cores busy on average.

Not part of the test suite.
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile

sys.path.insert(0, str(Path(__file__).resolve().parent))

from live_site import DEFAULT_REDIS_URL, Site, free_port, session_key  # noqa: E402

RATE = 44100
STEMS = ("drums", "bass", "other", "vocals", "guitar", "piano")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--autoplay-policy=no-user-gesture-required"]


def make_stems(folder: Path, seconds: float) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * RATE)) / RATE
    paths = {}
    for index, name in enumerate(STEMS):
        tone = 0.15 * np.sin(2 * np.pi * 110 * (index + 1) * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 0.5 * t))
        bursts = 0.1 * rng.standard_normal(len(t)) * (np.sin(2 * np.pi * 2 * t) > 0.95)
        stereo = np.stack([tone + bursts, tone - bursts], axis=1).astype(np.float32)
        wav = folder / f"{name}.wav"
        soundfile.write(wav, stereo, RATE)
        paths[name] = folder / f"{name}.mp3"
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-i", str(wav), "-b:a", "320k", str(paths[name])], check=True
        )
    return paths


def chromium_cpu_seconds() -> float:
    """User + system CPU seconds of every running chromium process (from /proc)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name = text[text.find("(") + 1 : text.rfind(")")]
        if "chrom" in name:
            fields = text.rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / 100
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--tempo", type=int, default=85)
    parser.add_argument("--semitones", type=int, default=-2)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with (
        tempfile.TemporaryDirectory(prefix="stemsite-bench-") as work,
        Site("sqlite", Path(work), "player_bench", args.redis_url) as site,
    ):
        from django.contrib.auth import get_user_model
        from django.core.files import File

        from jobs.models import Job, Stem

        stems = make_stems(Path(work), args.seconds + 15)
        user = get_user_model().objects.create_user("bench")
        job = Job(owner=user, original_name="Six stems.mp3", model_name="htdemucs_6s", status="succeeded")
        job.duration_seconds = args.seconds + 15
        job.tempo_bpm, job.beats = 120.0, [0.5 * n for n in range(int(2 * job.duration_seconds))]
        with stems["drums"].open("rb") as handle:
            job.input_file.save("six.mp3", File(handle), save=False)
        job.save()
        for position, (name, path) in enumerate(stems.items()):
            stem = Stem(job=job, name=name, position=position, size=path.stat().st_size)
            with path.open("rb") as handle:
                stem.file.save(path.name, File(handle), save=True)
        base = site.start(free_port())
        session, page_url = session_key(user), f"{base}{job.get_absolute_url()}"
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS)
            context = browser.new_context()
            context.add_cookies([{"name": "sessionid", "value": session, "url": base}])
            page = context.new_page()
            page.goto(page_url)
            page.wait_for_function(  # functions, not strings: the site's policy forbids eval
                "() => window.stemsiteMixer?.state()?.loaded && "
                "Object.values(window.stemsiteMixer.state().loaded).every(Boolean)",
                timeout=120_000,
            )
            for selector, value in (("[data-tempo]", args.tempo), ("[data-semitones]", args.semitones)):
                page.eval_on_selector(
                    selector, "(i, v) => { i.value = v; i.dispatchEvent(new Event('input')); }", str(value)
                )
            page.check("[data-click]")
            page.click("[data-play]")
            page.wait_for_function("() => window.stemsiteMixer.state().time > 0.2")
            probe = """() => { const c = window.stemsiteMixer.context(); const s = c.playbackStats;
                return {audio: c.currentTime, wall: performance.now() / 1000, events: s.underrunEvents,
                        underrun: s.underrunDuration, total: s.totalDuration,
                        position: window.stemsiteMixer.state().time}; }"""
            first = page.evaluate(probe)
            cpu_start, wall_start = chromium_cpu_seconds(), time.monotonic()
            print(
                f"{len(STEMS)} stems ({2 * len(STEMS)} channels through one stretch), tempo {args.tempo}%, "
                f"{args.semitones:+d} semitones, click on, {args.seconds:.0f} s"
            )
            print(" second  underruns  underrun ms  audio-wall ms  position s")
            last = first
            while last["wall"] - first["wall"] < args.seconds:
                page.wait_for_timeout(1000)
                last = page.evaluate(probe)
                behind = ((last["wall"] - first["wall"]) - (last["audio"] - first["audio"])) * 1000
                print(
                    f"{last['wall'] - first['wall']:7.1f}  {last['events'] - first['events']:9d}  "
                    f"{(last['underrun'] - first['underrun']) * 1000:11.1f}  {-behind:13.1f}  "
                    f"{last['position']:10.2f}"
                )
            cpu = chromium_cpu_seconds() - cpu_start
            wall = time.monotonic() - wall_start
            played = last["position"] - first["position"]
            print(
                f"\nUnderrun events: {last['events'] - first['events']} "
                f"({(last['underrun'] - first['underrun']) * 1000:.1f} ms of {wall:.1f} s played; "
                f"Chromium's AudioContext.playbackStats)"
            )
            print(
                f"Track advanced {played:.2f} s in {last['audio'] - first['audio']:.2f} s of audio clock "
                f"(expected {args.tempo / 100:.2f}x)"
            )
            print(f"Chromium CPU: {cpu:.1f} s in {wall:.1f} s = {cpu / wall:.2f} cores busy on average")
            browser.close()


if __name__ == "__main__":
    main()
