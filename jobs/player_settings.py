"""A user's player settings for one job: what the page sends, checked, and kept for the next visit.

The player posts its whole state (debounced) as JSON; only known fields with values in range are
kept, so a saved state always restores into a player that works. Shape:

    {"levels": {"vocals": 0.8, ...}, "muted": ["drums"], "soloed": [], "tempo": 85, "semitones": -2,
     "loop": {"start": 12.5, "end": 30.0} or null, "click": false, "click_volume": 0.6, "count_in": false}
"""

import math

from django.utils import timezone

from jobs import practice
from jobs.models import Job, PlayerSettings

MAX_LEVEL = 2.0
MAX_BODY_BYTES = 16 * 1024
DEFAULTS = {
    "levels": {}, "muted": [], "soloed": [], "tempo": 100, "semitones": 0, "loop": None,
    "click": False, "click_volume": 0.7, "count_in": False,
}  # fmt: skip


class InvalidSettings(ValueError):
    """A sentence saying which value is wrong."""


def clean(values: object, job: Job) -> dict:
    """The settings as they will be stored, or InvalidSettings naming the first bad value."""
    if not isinstance(values, dict):
        raise InvalidSettings("Send the player settings as a JSON object.")
    unknown = sorted(set(values) - set(DEFAULTS))
    if unknown:
        raise InvalidSettings(f"Unknown player setting: {', '.join(unknown)}.")
    names = list(job.stems.values_list("name", flat=True))
    cleaned = {**DEFAULTS, **values}
    cleaned["levels"] = _levels(cleaned["levels"], names)
    cleaned["muted"] = _stem_list(cleaned["muted"], names, "muted")
    cleaned["soloed"] = _stem_list(cleaned["soloed"], names, "soloed")
    cleaned["tempo"] = _checked(practice.check_tempo, cleaned["tempo"], practice.MSG_TEMPO)
    cleaned["semitones"] = _checked(practice.check_semitones, cleaned["semitones"], practice.MSG_SEMITONES)
    cleaned["loop"] = _loop(cleaned["loop"], job.duration_seconds)
    for flag in ("click", "count_in"):
        if not isinstance(cleaned[flag], bool):
            raise InvalidSettings(f"{flag} must be true or false.")
    if not _number(cleaned["click_volume"]) or not 0 <= cleaned["click_volume"] <= 1:
        raise InvalidSettings("The click volume must be a number from 0 to 1.")
    return cleaned


def saved_for(user, job: Job) -> dict:
    """What this user last left this job's player at, or {} (the player's own defaults)."""
    row = PlayerSettings.objects.filter(user=user, job=job).first()
    return row.values if row else {}


def save(user, job: Job, values: dict) -> None:
    PlayerSettings.objects.update_or_create(
        user=user, job=job, defaults={"values": values, "updated_at": timezone.now()}
    )


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _checked(check, value, message: str):
    if not _number(value):
        raise InvalidSettings(message)
    try:
        return check(value)
    except ValueError:
        raise InvalidSettings(message) from None


def _levels(levels, names: list[str]) -> dict[str, float]:
    if not isinstance(levels, dict):
        raise InvalidSettings("levels must map stem names to numbers.")
    for name, level in levels.items():
        if name not in names:
            raise InvalidSettings(f"This track has no stem named {name}.")
        if not _number(level) or not 0 <= level <= MAX_LEVEL:
            raise InvalidSettings(f"The level of {name} must be a number from 0 to {MAX_LEVEL:g}.")
    return {name: round(float(level), 3) for name, level in levels.items()}


def _stem_list(value, names: list[str], what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise InvalidSettings(f"{what} must be a list of stem names.")
    for name in value:
        if name not in names:
            raise InvalidSettings(f"This track has no stem named {name}.")
    return sorted(set(value), key=names.index)


def _loop(value, duration: float | None) -> dict | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"start", "end"}:
        raise InvalidSettings('The loop must be null or {"start": seconds, "end": seconds}.')
    if not (_number(value["start"]) and _number(value["end"])):
        raise InvalidSettings(practice.loop_message(duration))
    try:
        start, end = practice.check_loop(value["start"], value["end"], duration)
    except ValueError as error:
        raise InvalidSettings(str(error)) from None
    return {"start": start, "end": end}
