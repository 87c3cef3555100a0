"""Practice settings: the tempo, pitch and A-B loop a player plays a job at, their limits and the
sentences for values outside them, and the words that name a mix made with them.

One place for the limits, read by the export form (and so the API), the saved player settings and
the page. No Django here beyond what the callers pass in.
"""

from dataclasses import dataclass

from jobs.options import stem_label

TEMPO_MIN, TEMPO_MAX = 50, 150  # percent of the original tempo, in steps of 1
SEMITONES_MIN, SEMITONES_MAX = -12, 12
MIN_LOOP_SECONDS = 0.1

MSG_TEMPO = f"The tempo must be a whole percentage from {TEMPO_MIN} to {TEMPO_MAX}."
MSG_SEMITONES = f"The pitch must be a whole number of semitones from {SEMITONES_MIN} to +{SEMITONES_MAX}."
MSG_LOOP_PAIR = "Give both ends of the loop (its start and its end), or neither."


def loop_message(duration: float | None) -> str:
    within = f"0 and {duration:.1f}" if duration else "0 and the end of the track"
    return (
        f"The loop must start before it ends, at least {MIN_LOOP_SECONDS} s apart, both between "
        f"{within} seconds."
    )


@dataclass(frozen=True)
class Practice:
    """Tempo in percent (pitch kept), pitch in semitones (tempo kept), and an optional loop span in
    seconds of the original track. The defaults play the track as it is."""

    tempo: int = 100
    semitones: int = 0
    loop: tuple[float, float] | None = None

    @property
    def is_plain(self) -> bool:
        return self.tempo == 100 and self.semitones == 0 and self.loop is None

    @property
    def changes_sound(self) -> bool:
        """Whether tempo or pitch differ from the original (the loop only cuts)."""
        return self.tempo != 100 or self.semitones != 0

    def as_dict(self) -> dict:
        """Only what differs from the original: a plain mix keeps the settings (and key) it always had."""
        values: dict = {}
        if self.tempo != 100:
            values["tempo"] = self.tempo
        if self.semitones:
            values["semitones"] = self.semitones
        if self.loop is not None:
            values["loop"] = [round(self.loop[0], 2), round(self.loop[1], 2)]
        return values

    @classmethod
    def from_dict(cls, values: dict) -> "Practice":
        loop = values.get("loop")
        return cls(
            tempo=int(values.get("tempo", 100)),
            semitones=int(values.get("semitones", 0)),
            loop=(float(loop[0]), float(loop[1])) if loop else None,
        )

    def describe(self) -> str:
        """ "85% -2st", "loop 12.5-30s", or "" for the original tempo and pitch of the whole track."""
        words = []
        if self.tempo != 100:
            words.append(f"{self.tempo}%")
        if self.semitones:
            words.append(f"{self.semitones:+d}st")
        if self.loop is not None:
            start, end = (f"{seconds:.2f}".rstrip("0").rstrip(".") for seconds in self.loop)
            words.append(f"loop {start}-{end}s")
        return " ".join(words)


def check_tempo(value: float) -> int:
    """The tempo as a whole percentage; ValueError(MSG_TEMPO) outside the limits or not whole."""
    if value != value or value != int(value) or not TEMPO_MIN <= value <= TEMPO_MAX:  # NaN fails the first
        raise ValueError(MSG_TEMPO)
    return int(value)


def check_semitones(value: float) -> int:
    if value != value or value != int(value) or not SEMITONES_MIN <= value <= SEMITONES_MAX:
        raise ValueError(MSG_SEMITONES)
    return int(value)


def check_loop(start: float, end: float, duration: float | None) -> tuple[float, float]:
    """A loop span rounded to 10 ms; ValueError(loop_message) when it is empty, reversed or outside."""
    ends_inside = duration is None or end <= duration + 0.01
    if not (start >= 0 and end - start >= MIN_LOOP_SECONDS and ends_inside):  # also false for NaN
        raise ValueError(loop_message(duration))
    return round(start, 2), round(end, 2)


def mix_words(gains: dict[str, float]) -> str:
    """What a mix holds, from its effective gains: "mix" when every stem sounds, "no vocals" when
    some are silent, "bass and drums only" when no more sound than not."""
    silent = [stem_label(name) for name, gain in gains.items() if not gain]
    sounding = [stem_label(name) for name, gain in gains.items() if gain]
    if not silent:
        return "mix"
    if not sounding:
        return "silence"
    if len(sounding) <= len(silent):
        return f"{_and(sounding)} only"
    return f"no {_and(silent)}"


def _and(labels: list[str]) -> str:
    return labels[0] if len(labels) == 1 else f"{', '.join(labels[:-1])} and {labels[-1]}"
