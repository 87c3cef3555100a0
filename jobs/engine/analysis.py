"""Tempo, beats and key of a separated track, measured on its stems with librosa.

Beats come from the drums stem (without the harmonic instruments smearing the onsets), the key
from the harmonic stems (bass and other, plus guitar and piano on six-stem models; no drums or
vocals). No Django here: the worker, the operator's command and bench/ share it as it is.

What the figures promise: a steady beat is measured to within about 1 BPM (the mean beat period
over the whole track); a track whose onsets show no regular pulse says so (`tempo_bpm` None)
rather than give a number. The tempo may read at half or double the felt tempo when the drums
play as strongly on the off-beats as on the beats. The key is the major or minor key whose
profile best matches the track's pitch-class content; relative keys (C major / A minor) and
modal music are where it errs.
"""

import fcntl
import importlib.util
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

ANALYSIS_RATE = 22050
HOP = 256  # 11.6 ms frames at ANALYSIS_RATE: beat times to about 6 ms
MIN_BPM, MAX_BPM = 60.0, 200.0
# How clearly the onsets repeat at the beat period (normalised autocorrelation, 0..1), and how
# regular the tracked beats are (spread of their intervals), below and above which a track has no
# steady tempo. Click tracks and drum loops score above 0.5 and below 0.05; ambient pads and
# noise stay under 0.2 or wander by more than 0.15.
MIN_PULSE_CLARITY = 0.3
MAX_INTERVAL_SPREAD = 0.12
MIN_BEATS = 8
SILENT = 1e-4  # RMS of a stem that holds nothing (a separation's leftovers are louder)

NOTE_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
# Pitch-class weights of major and minor keys on their tonic: Temperley's (Kostka-Payne) profiles,
# which weigh the scale's own notes more evenly than Krumhansl's and read chordal music better.
MAJOR_PROFILE = np.array([0.748, 0.060, 0.488, 0.082, 0.670, 0.460, 0.096, 0.715, 0.104, 0.366, 0.057, 0.400])
MINOR_PROFILE = np.array([0.712, 0.084, 0.474, 0.618, 0.049, 0.460, 0.105, 0.747, 0.404, 0.067, 0.133, 0.330])

RHYTHM_STEMS = ("drums",)
NOT_HARMONIC = {"drums", "vocals"}


@dataclass(frozen=True)
class TrackAnalysis:
    tempo_bpm: float | None  # None: no steady tempo
    beats: list[float]  # seconds; empty when there is no steady tempo
    key: str  # "A minor"; "" when the stems hold no pitched sound


def preload() -> None:
    """Load librosa's compiled code in this process, one process at a time (about 3 s; far longer
    the first time a site runs, while numba compiles it).

    numba writes librosa's compiled functions to an on-disk cache the first time each one runs.
    Processes that write it at once (a fresh install's workers, test processes) can leave an entry
    holding another signature's code, and every process that loads it later crashes (a
    segmentation fault, seen with four processes on a fresh install). So each process analyses a
    short made-up track here first, holding a lock: one process writes the cache while the
    others wait, then read it whole. A worker's parent calls this so the jobs it forks start warm;
    `analyse_stems` calls it in any other process.
    """
    global _loaded
    if _loaded:
        return
    with _one_process_at_a_time():
        if _loaded:  # another thread of this process got here first
            return
        import librosa.beat
        import librosa.feature
        import librosa.onset  # noqa: F401

        _loaded = True
        t = np.arange(8 * ANALYSIS_RATE) / ANALYSIS_RATE
        clicks = np.where(np.mod(t, 0.5) < 0.005, np.sin(2 * np.pi * 2000 * t), 0.0)
        chord = sum(np.sin(2 * np.pi * hz * t) for hz in (220.0, 277.2, 329.6))
        try:
            measure_beats(clicks.astype(np.float32))
            measure_key((0.1 * chord).astype(np.float32))
        except BaseException:
            _loaded = False
            raise


_loaded = False
_lock = threading.Lock()


@contextmanager
def _one_process_at_a_time():
    """Hold a lock on librosa's own `__init__.py` (read-only: nothing is written, and numba's cache
    is per installed copy of librosa, as this lock is), and this process's lock for its threads."""
    source = importlib.util.find_spec("librosa").origin  # found without importing it
    with _lock, open(source, "rb") as locked:
        fcntl.flock(locked, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(locked, fcntl.LOCK_UN)


def analyse_stems(stems: dict[str, np.ndarray], sample_rate: int) -> TrackAnalysis:
    """Measure a track from its stems, `{name: [channels, samples]}` (or `[samples]`) at `sample_rate`.

    The rhythm is read from the drums stem when there is one, else from every stem but vocals;
    the key from the stems that are neither drums nor vocals, else from all of them.
    """
    preload()
    names = list(stems)
    rhythm = [name for name in names if name in RHYTHM_STEMS] or [n for n in names if n != "vocals"] or names
    harmonic = [name for name in names if name not in NOT_HARMONIC] or names
    tempo, beats = measure_beats(_mono_sum([stems[n] for n in rhythm], sample_rate))
    key = measure_key(_mono_sum([stems[n] for n in harmonic], sample_rate))
    return TrackAnalysis(tempo, beats, key)


def _mono_sum(parts: list[np.ndarray], sample_rate: int) -> np.ndarray:
    """The parts summed to one channel at ANALYSIS_RATE, float32."""
    import librosa

    total = None
    for part in parts:
        mono = np.asarray(part, dtype=np.float32)
        if mono.ndim == 2:
            mono = mono.mean(axis=0)
        if total is None:
            total = mono.copy()
        else:
            length = max(len(total), len(mono))
            total = np.pad(total, (0, length - len(total)))
            total[: len(mono)] += mono
    if total is None:
        return np.zeros(0, dtype=np.float32)
    if sample_rate != ANALYSIS_RATE:
        total = librosa.resample(total, orig_sr=sample_rate, target_sr=ANALYSIS_RATE, res_type="soxr_hq")
    return total.astype(np.float32, copy=False)


def measure_beats(mono: np.ndarray) -> tuple[float | None, list[float]]:
    """(tempo in BPM, beat times in seconds) of `mono` at ANALYSIS_RATE, or (None, []) without a steady beat.

    The period is the strongest repetition of the onset strength between MIN_BPM and MAX_BPM; the
    beats are tracked at that period, and the tempo is the slope of a line fitted through them,
    which is far finer than one analysis frame.
    """
    import librosa

    if len(mono) < ANALYSIS_RATE * 4 or float(np.sqrt(np.mean(np.square(mono)))) < SILENT:
        return None, []
    onsets = librosa.onset.onset_strength(y=mono, sr=ANALYSIS_RATE, hop_length=HOP)
    period, clarity = _pulse_period(onsets)
    if period is None or clarity < MIN_PULSE_CLARITY:
        return None, []
    frames_per_minute = 60.0 * ANALYSIS_RATE / HOP
    _, frames = librosa.beat.beat_track(
        onset_envelope=onsets, sr=ANALYSIS_RATE, hop_length=HOP, bpm=frames_per_minute / period,
        tightness=400, trim=True,
    )  # fmt: skip
    times = _steady_run(librosa.frames_to_time(frames, sr=ANALYSIS_RATE, hop_length=HOP))
    if len(times) < MIN_BEATS:
        return None, []
    intervals = np.diff(times)
    spread = float(np.std(intervals) / np.median(intervals))
    if spread > MAX_INTERVAL_SPREAD:
        return None, []
    slope = np.polyfit(np.arange(len(times)), times, 1)[0]
    tempo = 60.0 / slope
    return round(float(tempo), 2), [round(float(t), 3) for t in times]


def _steady_run(times: np.ndarray) -> np.ndarray:
    """The beats without a first or last one the tracker placed off the pulse (at the very start or
    end of the audio, where the dynamic programme has no onsets to lean on)."""
    while len(times) > MIN_BEATS:
        intervals = np.diff(times)
        typical = np.median(intervals)
        if abs(intervals[0] - typical) > 0.08 * typical:
            times = times[1:]
        elif abs(intervals[-1] - typical) > 0.08 * typical:
            times = times[:-1]
        else:
            break
    return times


def _pulse_period(onsets: np.ndarray) -> tuple[float | None, float]:
    """The beat period in frames (fractional) and how clearly the onsets repeat at it (0..1).

    Each lag's autocorrelation is taken relative to lag 0; the strongest lag in the tempo range
    wins (a shorter one when a multiple of it is barely stronger: a click every 345 ms repeats at
    690 ms too). A parabola through the peak and its neighbours gives the fractional lag.
    """
    envelope = onsets - onsets.mean()
    energy = float(np.dot(envelope, envelope))
    if energy <= 0:
        return None, 0.0
    frames_per_minute = 60.0 * ANALYSIS_RATE / HOP
    low = int(np.floor(frames_per_minute / MAX_BPM))
    high = int(np.ceil(frames_per_minute / MIN_BPM)) + 1
    size = len(envelope)
    spectrum = np.fft.rfft(envelope, n=2 * size)
    correlation = np.fft.irfft(spectrum * np.conj(spectrum))[: high + 2]
    # Unbiased: each lag over the frames it overlaps, so longer lags are not favoured or penalised.
    correlation = correlation / np.maximum(size - np.arange(len(correlation)), 1) / (energy / size)
    # A period between two frames splits its peak over both: smoothed, each peak keeps its height.
    smooth = np.convolve(correlation, [0.25, 0.5, 0.25], mode="same")
    best = low + int(np.argmax(smooth[low:high]))
    for divisor in (2, 3):
        shorter = round(best / divisor)
        if shorter >= low and smooth[shorter - 1 : shorter + 2].max() >= 0.85 * smooth[best]:
            best = shorter - 1 + int(np.argmax(correlation[shorter - 1 : shorter + 2]))
            break
    clarity = float(correlation[best])
    left, centre, right = correlation[best - 1], correlation[best], correlation[best + 1]
    curvature = left - 2 * centre + right
    offset = 0.5 * (left - right) / curvature if curvature < 0 else 0.0
    return best + float(np.clip(offset, -0.5, 0.5)), clarity


def measure_key(mono: np.ndarray) -> str:
    """The best-matching major or minor key of `mono` at ANALYSIS_RATE ("F# major"), or "" for silence."""
    import librosa

    if len(mono) < ANALYSIS_RATE or float(np.sqrt(np.mean(np.square(mono)))) < SILENT:
        return ""
    with warnings.catch_warnings():
        # Stems with little pitched sound leave the tuning estimate nothing to read: librosa warns
        # and assumes A440, which is what the key needs then.
        warnings.filterwarnings("ignore", message="Trying to estimate tuning from empty frequency set")
        chroma = librosa.feature.chroma_cqt(y=mono, sr=ANALYSIS_RATE, hop_length=2048, bins_per_octave=36)
    profile = chroma.sum(axis=1)
    if not np.any(profile > 0):
        return ""
    return key_of_profile(profile)


def key_of_profile(profile: np.ndarray) -> str:
    """The key whose rotated key profile correlates best with a 12-bin pitch-class profile (C first)."""
    best, best_score = "", -np.inf
    for tonic in range(12):
        for mode, template in (("major", MAJOR_PROFILE), ("minor", MINOR_PROFILE)):
            score = float(np.corrcoef(profile, np.roll(template, tonic))[0, 1])
            if score > best_score:
                best, best_score = f"{NOTE_NAMES[tonic]} {mode}", score
    return best
