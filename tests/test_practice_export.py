"""Exports honour the practice settings: tempo (pitch kept), pitch (tempo kept) and the loop's span,
rendered by a real worker with the player's time-stretch; the same limits and sentences in the form and the
API; the same settings give the same export; the file name says what it is."""

import json

import numpy as np
import pytest
import soundfile
from django.core.files import File
from django.urls import reverse

from jobs.background.exports import settings_key
from jobs.models import MixExport, Stem
from jobs.practice import MSG_SEMITONES, MSG_TEMPO, Practice, loop_message
from tests.test_export import export_in, post_export, queued_runs

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.database_agnostic]

RATE = 44100
SECONDS = 4.0
IMPULSES = (1.0, 2.5)
TONES = {"drums": 440, "bass": 220, "other": 330, "vocals": 550}


def stem_samples(frequency: float) -> np.ndarray:
    """`[2, samples]`: a steady tone, and the same impulse in every stem at IMPULSES."""
    t = np.arange(int(SECONDS * RATE)) / RATE
    mono = 0.1 * np.sin(2 * np.pi * frequency * t)
    for at in IMPULSES:
        mono[int(at * RATE) : int(at * RATE) + 8] = 0.8
    return np.stack([mono, mono]).astype(np.float32)


@pytest.fixture
def tone_job(owner, make_job):
    """A succeeded 4 s job whose stems are FLAC tones (drums at 440 Hz) with aligned impulses."""
    job = make_job(owner, stems=(), name="Song.wav", duration_seconds=SECONDS)
    storage = job.input_file.storage
    for position, (name, frequency) in enumerate(TONES.items()):
        path = storage.path(f"hand-{name}.flac")
        soundfile.write(path, stem_samples(frequency).T, RATE)
        stem = Stem(job=job, name=name, position=position)
        with open(path, "rb") as handle:
            stem.file.save(f"{name}.flac", File(handle), save=False)
        stem.size = stem.file.size
        stem.save()
        storage.delete(f"hand-{name}.flac")
    return job


def rendered(export: MixExport) -> np.ndarray:
    export.refresh_from_db()
    assert export.status == "succeeded", export.error_message
    samples, rate = soundfile.read(export.file.path, dtype="float32", always_2d=True)
    assert rate == RATE
    return samples[:, 0]


def main_frequency(samples: np.ndarray) -> float:
    """The strongest frequency of a steady stretch (0.2 s after the start to before the first impulse),
    refined between FFT bins by a parabola through the peak."""
    part = samples[int(0.05 * RATE) : int(0.05 * RATE) + 16384] * np.hanning(16384)
    spectrum = np.abs(np.fft.rfft(part, n=65536))
    peak = int(np.argmax(spectrum))
    left, centre, right = np.log(spectrum[peak - 1 : peak + 2])
    return (peak + 0.5 * (left - right) / (left - 2 * centre + right)) * RATE / 65536


def onsets(samples: np.ndarray, near: list[float]) -> list[float]:
    """Seconds at which a sharp rise first reaches half its height near each expected time."""
    rise = np.abs(np.diff(samples, prepend=samples[0]))
    found = []
    for at in near:
        start, end = int((at - 0.1) * RATE), int((at + 0.1) * RATE)
        window = rise[start:end]
        found.append((start + int(np.argmax(window >= 0.5 * window.max()))) / RATE)
    return found


@pytest.mark.slow
def test_tempo_pitch_and_loop_are_in_the_export(owner_client, owner, tone_job, run_worker):
    up_an_octave = export_in(post_export(owner_client, tone_job, "wav", solo_drums="on", semitones="12"))
    half_speed = export_in(post_export(owner_client, tone_job, "wav", tempo="50"))
    aligned = {
        name: export_in(post_export(owner_client, tone_job, "wav", tempo="73", **{f"solo_{name}": "on"}))
        for name in ("drums", "vocals")
    }
    looped = export_in(
        post_export(owner_client, tone_job, "wav", tempo="80", loop_start="0.5", loop_end="2.0")
    )
    whole_mix = export_in(post_export(owner_client, tone_job, "wav", tempo="73"))

    assert run_worker().returncode == 0

    octave = rendered(up_an_octave)
    assert main_frequency(octave) == pytest.approx(880, rel=0.01), "+12 semitones of 440 Hz"
    assert len(octave) == int(SECONDS * RATE), "the pitch changes, the duration does not"

    slow = rendered(half_speed)
    assert len(slow) / RATE == pytest.approx(2 * SECONDS, abs=0.01 * SECONDS), "50% doubles the duration"

    mix = rendered(whole_mix)
    times = onsets(mix, [at / 0.73 for at in IMPULSES])
    for export in aligned.values():
        alone = onsets(rendered(export), [at / 0.73 for at in IMPULSES])
        assert np.abs(np.subtract(alone, times)).max() * 1000 <= 1.0, "stems aligned within 1 ms"
    assert np.subtract(times, [at / 0.73 for at in IMPULSES]) == pytest.approx([0, 0], abs=0.05)

    loop = rendered(looped)
    assert len(loop) / RATE == pytest.approx(1.5 / 0.8, abs=0.01)
    assert onsets(loop, [0.5 / 0.8])[0] == pytest.approx(0.5 / 0.8, abs=0.05), (
        "the impulse at 1.0 s, 0.5 s in"
    )
    assert looped.download_name == "Song - mix - 80% loop 0.5-2s.wav"
    assert up_an_octave.download_name == "Song - drums only - +12st.wav"


def test_same_practice_settings_give_the_same_export_and_other_settings_another(
    owner_client, owner, make_job
):
    job = make_job(owner, duration_seconds=1.0)
    first = export_in(post_export(owner_client, job, "mp3", mute_vocals="on", tempo="85", semitones="-2"))
    again = export_in(post_export(owner_client, job, "mp3", mute_vocals="on", tempo="85.0", semitones="-2"))
    assert again.pk == first.pk
    assert queued_runs() == 1
    assert first.download_name == "Song - no vocals - 85% -2st.mp3"
    assert first.settings == {"gains": {"drums": 1.0, "bass": 1.0, "other": 1.0, "vocals": 0.0},
                              "tempo": 85, "semitones": -2}  # fmt: skip

    for fields in ({"tempo": "86"}, {"semitones": "-1"}, {"loop_start": "0.1", "loop_end": "0.9"}):
        other = export_in(post_export(owner_client, job, "mp3", mute_vocals="on", **{"tempo": "85",
                                      "semitones": "-2", **fields}))  # fmt: skip
        assert other.pk != first.pk, fields
    plain = export_in(post_export(owner_client, job, "mp3", tempo="100", semitones="0"))
    assert plain.settings_key == settings_key({name: 1.0 for name in TONES}, "mp3"), (
        "plain mixes keep their key"
    )
    assert plain.download_name == "Song - mix.mp3"


# (the export form's fields, the API's JSON body for the same values, the sentence both give)
REFUSALS = [
    ({"tempo": "49"}, {"tempo": 49}, MSG_TEMPO),
    ({"tempo": "151"}, {"tempo": 151}, MSG_TEMPO),
    ({"tempo": "85.5"}, {"tempo": 85.5}, MSG_TEMPO),
    ({"semitones": "13"}, {"semitones": 13}, MSG_SEMITONES),
    ({"semitones": "-12.5"}, {"semitones": -12.5}, MSG_SEMITONES),
    ({"loop_start": "0.8", "loop_end": "0.5"}, {"loop": {"start": 0.8, "end": 0.5}}, loop_message(1.0)),
    ({"loop_start": "0.5", "loop_end": "5"}, {"loop": {"start": 0.5, "end": 5}}, loop_message(1.0)),
    ({"loop_start": "0.5", "loop_end": "0.55"}, {"loop": {"start": 0.5, "end": 0.55}}, loop_message(1.0)),
    ({"loop_start": "-1", "loop_end": "0.5"}, {"loop": {"start": -1, "end": 0.5}}, loop_message(1.0)),
]


@pytest.mark.parametrize(("fields", "body", "sentence"), REFUSALS)
def test_bad_practice_settings_are_refused_with_the_same_sentence_in_page_and_api(
    owner_client, client, owner, make_job, fields, body, sentence
):
    job = make_job(owner, duration_seconds=1.0)
    page = owner_client.post(
        reverse("export_create", args=[job.pk]), {"output_format": "mp3", **fields}, HTTP_HX_REQUEST="true"
    )
    assert page.status_code == 400
    assert sentence in page.content.decode()

    api = api_post_export(client, owner, job, {"format": "mp3", **body})
    assert api.status_code == 400
    assert sentence in api.json()["error"]["message"]
    assert MixExport.objects.count() == 0
    assert queued_runs() == 0


def test_half_a_loop_and_a_word_for_a_tempo_are_refused(owner_client, owner, make_job):
    job = make_job(owner, duration_seconds=1.0)
    for fields, sentence in (
        ({"loop_start": "0.5"}, "Give both ends of the loop (its start and its end), or neither."),
        ({"tempo": "fast"}, MSG_TEMPO),
    ):
        page = post_export(owner_client, job, "mp3", **fields)
        assert page.status_code == 400
        assert sentence in page.content.decode()
    assert MixExport.objects.count() == 0


def api_post_export(client, user, job, body):
    from jobs.api.tokens import create_token

    token = create_token(user, "test")[1]
    return client.post(
        f"/api/jobs/{job.pk}/exports", json.dumps(body), content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )  # fmt: skip


def test_api_export_takes_tempo_semitones_and_loop_and_reports_them(owner, make_job, client):
    job = make_job(owner, duration_seconds=1.0)
    body = {
        "format": "wav",
        "mute": ["vocals"],
        "tempo": 85,
        "semitones": -2,
        "loop": {"start": 0.25, "end": 0.75},
    }
    response = api_post_export(client, owner, job, body)
    assert response.status_code == 202, response.content
    out = response.json()
    assert (out["tempo"], out["semitones"], out["loop"]) == (85, -2, [0.25, 0.75])
    assert out["name"] == "Song - no vocals - 85% -2st loop 0.25-0.75s.wav"
    assert MixExport.objects.get(pk=out["id"]).practice == Practice(85, -2, (0.25, 0.75))
    again = api_post_export(client, owner, job, {**body, "tempo": 85.0})
    assert again.json()["id"] == out["id"]


def test_outsider_cannot_export_with_practice_settings(outsider_client, owner, make_job):
    job = make_job(owner, name="Secret Song.wav")
    response = post_export(outsider_client, job, "wav", tempo="80")
    assert response.status_code == 404
    assert MixExport.objects.count() == 0
