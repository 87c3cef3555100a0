"""What the practice settings cost an export: a 3-minute mix plain and at 85% tempo (and -2 semitones).

Run from the repository root:

    .venv/bin/python bench/practice_export.py                 # 180 s, mp3, 3 rounds
    .venv/bin/python bench/practice_export.py --seconds 60 --format wav --rounds 1

It writes four 320 kbit/s MP3 stems (tones, noise bursts and clicks), then times the worker's own
render steps (jobs/background/exports.py: decode and sum the stems, cut and stretch them, encode the
mix) for the plain mix and for the practice settings, interleaved round by round, and prints each
time and the ratio of the medians (the target is under 1.5x). Not part of the test suite.
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stemsite.settings")
os.environ.setdefault("SECRET_KEY", "bench-only")

RATE = 44100


def make_stems(folder: Path, seconds: float) -> list[Path]:
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * RATE)) / RATE
    paths = []
    for index in range(4):
        tone = 0.2 * np.sin(2 * np.pi * 110 * (index + 1) * t)
        bursts = 0.2 * rng.standard_normal(len(t)) * (np.sin(2 * np.pi * 2 * t) > 0.97)
        wav = folder / f"stem{index}.wav"
        soundfile.write(wav, np.stack([tone + bursts, tone - bursts], axis=1).astype(np.float32), RATE)
        paths.append(folder / f"stem{index}.mp3")
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-i", str(wav), "-b:a", "320k", str(paths[-1])], check=True
        )
        wav.unlink()
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=180)
    parser.add_argument("--format", default="mp3", choices=["mp3", "wav", "flac"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tempo", type=int, default=85)
    parser.add_argument("--semitones", type=int, default=0)
    args = parser.parse_args()
    import django

    django.setup()
    import torch

    from jobs.background.exports import EXPORT_FORMATS, MIX_SAMPLE_RATE, apply_practice, mix_stems
    from jobs.engine import separation
    from jobs.practice import Practice

    fmt = EXPORT_FORMATS[args.format]
    settings = {"plain": Practice(), "practice": Practice(args.tempo, args.semitones)}
    times = {name: [] for name in settings}
    with tempfile.TemporaryDirectory(prefix="stemsite-bench-") as folder:
        stems = make_stems(Path(folder), args.seconds)
        for round_number in range(args.rounds):
            for name, practice in settings.items():
                started = time.perf_counter()
                mix = mix_stems([(path, 1.0) for path in stems], args.seconds + 60, timeout=600)
                mix = apply_practice(mix, MIX_SAMPLE_RATE, practice)
                target = Path(folder) / f"mix.{fmt.extension}"
                separation.encode(
                    torch.from_numpy(mix), target, MIX_SAMPLE_RATE, fmt.bits, False, fmt.mp3_bitrate
                )
                times[name].append(time.perf_counter() - started)
                print(
                    f"round {round_number + 1} {name:8s} {times[name][-1]:6.2f} s  "
                    f"({mix.shape[1] / MIX_SAMPLE_RATE:.1f} s of audio)"
                )
    plain, practice = statistics.median(times["plain"]), statistics.median(times["practice"])
    print(
        f"\n{args.seconds:.0f} s, 4 stems, {args.format}: plain {plain:.2f} s, "
        f"{args.tempo}% {args.semitones:+d} st {practice:.2f} s: {practice / plain:.2f}x (target < 1.5x)"
    )


if __name__ == "__main__":
    main()
