"""Synthetic audio whose tempo and key are known, for the analysis tests and bench/key_accuracy.py.

Click tracks at a given tempo, chord progressions in a given key rendered as tones (a bass on the
chord's root under a triad), and an ambient pad with no beat. Deterministic for a given seed.
"""

import numpy as np

from jobs.engine.analysis import NOTE_NAMES

RATE = 44100

# Progressions as (scale degree in semitones above the tonic, chord quality) per bar.
PROGRESSIONS = {
    "major": [
        [(0, "maj"), (5, "maj"), (7, "maj"), (0, "maj")],  # I IV V I
        [(0, "maj"), (9, "min"), (5, "maj"), (7, "dom7"), (0, "maj")],  # I vi IV V7 I
        [(0, "maj"), (2, "min"), (7, "dom7"), (0, "maj")],  # I ii V7 I
        [(0, "maj"), (4, "min"), (5, "maj"), (7, "maj"), (0, "maj")],  # I iii IV V I
    ],
    "minor": [
        [(0, "min"), (5, "min"), (7, "maj"), (0, "min")],  # i iv V i
        [(0, "min"), (8, "maj"), (3, "maj"), (7, "dom7"), (0, "min")],  # i VI III V7 i
        [(0, "min"), (10, "maj"), (8, "maj"), (7, "maj"), (0, "min")],  # i VII VI V i
        [(0, "min"), (2, "dim"), (7, "dom7"), (0, "min")],  # i ii° V7 i
    ],
}
CHORDS = {"maj": (0, 4, 7), "min": (0, 3, 7), "dim": (0, 3, 6), "dom7": (0, 4, 7, 10)}


def click_track(bpm: float, seconds: float = 20.0, rate: int = RATE) -> np.ndarray:
    """A metronome: a 5 ms 2 kHz blip on every beat, stereo `[2, samples]` float32."""
    samples = np.zeros(int(seconds * rate), dtype=np.float32)
    blip_length = int(0.005 * rate)
    t = np.arange(blip_length) / rate
    blip = (0.8 * np.sin(2 * np.pi * 2000 * t) * np.exp(-t / 0.0015)).astype(np.float32)
    period = 60.0 / bpm
    beat = 0.1
    while beat * rate + blip_length < len(samples):
        start = int(round(beat * rate))
        samples[start : start + blip_length] += blip
        beat += period
    return np.stack([samples, samples])


def note_frequency(midi: float) -> float:
    return 440.0 * 2 ** ((midi - 69) / 12)


def _tone(frequency: float, length: int, rate: int, harmonics: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(length) / rate
    wave = np.zeros(length)
    for n in range(1, harmonics + 1):
        wave += np.sin(2 * np.pi * frequency * n * t + rng.uniform(0, 2 * np.pi)) / n
    attack = np.minimum(1.0, t / 0.02)
    release = np.minimum(1.0, (length - np.arange(length)) / (0.05 * rate))
    return wave * attack * release


def progression(
    tonic: int, mode: str, variant: int = 0, bar_seconds: float = 2.0, rate: int = RATE, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(bass, chords): one progression in `NOTE_NAMES[tonic]` `mode`, each `[2, samples]` float32.

    The bass plays each chord's root in octave 2; the chords sound as close triads (or sevenths)
    in octave 4, each note with a few harmonics, as a keyboard would.
    """
    rng = np.random.default_rng(seed)
    bars = PROGRESSIONS[mode][variant % len(PROGRESSIONS[mode])]
    length = int(bar_seconds * rate)
    bass = np.zeros(length * len(bars))
    chords = np.zeros(length * len(bars))
    for index, (degree, quality) in enumerate(bars):
        root = 60 + (tonic + degree) % 12
        where = slice(index * length, (index + 1) * length)
        bass[where] += 0.35 * _tone(note_frequency(root - 24), length, rate, 4, rng)
        for interval in CHORDS[quality]:
            chords[where] += 0.12 * _tone(note_frequency(root + interval), length, rate, 5, rng)
    return (
        np.stack([bass, bass]).astype(np.float32),
        np.stack([chords, chords]).astype(np.float32),
    )


def key_name(tonic: int, mode: str) -> str:
    return f"{NOTE_NAMES[tonic % 12]} {mode}"


def ambient_pad(seconds: float = 30.0, rate: int = RATE, seed: int = 0) -> np.ndarray:
    """Slow-swelling chords over soft noise, with no beat: each swell fades in and out over seconds,
    at irregular times, as in drumless ambient music. Stereo `[2, samples]` float32."""
    rng = np.random.default_rng(seed)
    length = int(seconds * rate)
    t = np.arange(length) / rate
    pad = 0.01 * rng.standard_normal(length)
    start = 0.0
    while start < seconds:
        swell = rng.uniform(4.0, 9.0)
        root = 48 + int(rng.integers(0, 12))
        envelope = np.clip(np.sin(np.pi * (t - start) / swell), 0, None) * (
            (t >= start) & (t < start + swell)
        )
        for interval in (0, 7, 12, 16):
            pad += 0.06 * envelope * np.sin(2 * np.pi * note_frequency(root + interval) * t)
        start += rng.uniform(1.3, 3.7)
    return np.stack([pad, pad]).astype(np.float32)
