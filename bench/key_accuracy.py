"""How often the key (and the tempo) comes out right on synthetic music whose answer is known.

Run from the repository root:

    .venv/bin/python bench/key_accuracy.py              # 12 tonics x 2 modes x 4 progressions x 2 voicings
    .venv/bin/python bench/key_accuracy.py --seeds 1

Each progression (jobs/engine/testtracks.py) is rendered as a bass stem and a chord stem, over a
click track as the drums stem, and measured by jobs/engine/analysis.py as the worker measures a
separated track. Prints the share of keys right, the kinds of mistakes (relative major/minor, a
fifth away, parallel mode, other), and the share of click tracks from 60 to 199 BPM measured within
1 BPM. Not part of the test suite.
"""

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jobs.engine import analysis, testtracks  # noqa: E402

MODES = ("major", "minor")


def mistake(expected: str, found: str) -> str:
    (tonic, mode), (got_tonic, got_mode) = expected.split(), found.split()
    names = analysis.NOTE_NAMES
    step = (names.index(got_tonic) - names.index(tonic)) % 12
    if mode != got_mode and step == (9 if mode == "major" else 3):
        return "relative"
    if mode != got_mode and step == 0:
        return "parallel"
    if mode == got_mode and step in (5, 7):
        return "fifth"
    return "other"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2, help="voicings (random phases) per progression")
    args = parser.parse_args()
    started = time.monotonic()
    right, total, mistakes = 0, 0, Counter()
    for tonic in range(12):
        for mode in MODES:
            for variant in range(len(testtracks.PROGRESSIONS[mode])):
                for seed in range(args.seeds):
                    bass, chords = testtracks.progression(tonic, mode, variant, seed=seed * 100 + tonic)
                    drums = testtracks.click_track(100 + 7 * variant, seconds=bass.shape[1] / testtracks.RATE)
                    stems = {"drums": drums, "bass": bass, "other": chords}
                    found = analysis.analyse_stems(stems, testtracks.RATE).key
                    expected = testtracks.key_name(tonic, mode)
                    total += 1
                    if found == expected:
                        right += 1
                    else:
                        mistakes[mistake(expected, found)] += 1
    print(f"Key right: {right} of {total} progressions = {100 * right / total:.1f}%")
    print("Mistakes: " + (", ".join(f"{kind} {count}" for kind, count in mistakes.most_common()) or "none"))

    tempos = list(range(60, 200, 3))
    close = 0
    for bpm in tempos:
        measured = analysis.analyse_stems({"drums": testtracks.click_track(bpm, seconds=20)}, testtracks.RATE)
        close += measured.tempo_bpm is not None and abs(measured.tempo_bpm - bpm) <= 1
    print(
        f"Tempo within 1 BPM: {close} of {len(tempos)} click tracks from 60 to 198 BPM = "
        f"{100 * close / len(tempos):.1f}%"
    )
    print(f"({time.monotonic() - started:.1f} s)")


if __name__ == "__main__":
    main()
