"""Tempo, beats and key: measured on audio whose answer is known, by the worker after a separation,
on old jobs by `manage.py analyse_tracks`, shown on the pages and given by the API."""

import logging
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from django.core.files import File
from django.core.management import call_command
from django.urls import reverse

from jobs.background.analysis import analyse_separation
from jobs.engine import analysis, testtracks
from jobs.models import Job, Stem
from tests.test_worker import upload

pytestmark = pytest.mark.database_agnostic

RATE = testtracks.RATE


@pytest.mark.parametrize("bpm", [70, 120, 174])
def test_click_tracks_are_measured_within_1_bpm(bpm):
    result = analysis.analyse_stems({"drums": testtracks.click_track(bpm, seconds=20)}, RATE)
    assert result.tempo_bpm == pytest.approx(bpm, abs=1)
    period = 60 / bpm
    clicks = (np.array(result.beats) - 0.1) / period  # the clicks are at 0.1 s + n periods
    assert np.abs(clicks - np.round(clicks)).max() * period < 0.02, "every beat is on a click"
    assert result.beats[0] < 0.1 + 2 * period, "from the start"
    assert result.beats[-1] > 20 - 3 * period, "to the end"


ANALYSE_ONE_TRACK = """
from jobs.engine import analysis, testtracks
bass, chords = testtracks.progression(9, "minor")
drums = testtracks.click_track(120, seconds=bass.shape[1] / testtracks.RATE)
result = analysis.analyse_stems({"drums": drums, "bass": bass, "other": chords}, testtracks.RATE)
print(result.tempo_bpm, result.key)
"""


@pytest.mark.slow
def test_processes_that_first_analyse_at_once_all_finish(tmp_path):
    """A fresh install's workers compile librosa's code at the same moment; written at once, numba's
    cache held one function's code under another's name and the processes that loaded it crashed."""
    env = {"NUMBA_CACHE_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    command = [sys.executable, "-c", ANALYSE_ONE_TRACK]
    root = Path(__file__).resolve().parent.parent
    processes = [subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.PIPE) for _ in range(4)]
    outputs = [process.communicate(timeout=300)[0].decode() for process in processes]
    assert [process.returncode for process in processes] == [0] * 4, outputs
    tempo, key = outputs[0].split(" ", 1)
    assert (float(tempo), key) == (pytest.approx(120, abs=1), "A minor\n")
    assert outputs == [outputs[0]] * 4


@pytest.mark.parametrize(("tonic", "mode"), [(0, "major"), (9, "minor"), (6, "major")])
def test_chords_of_a_known_key_give_that_key(tonic, mode):
    bass, chords = testtracks.progression(tonic, mode, variant=1, seed=tonic)
    drums = testtracks.click_track(120, seconds=bass.shape[1] / RATE)
    result = analysis.analyse_stems({"drums": drums, "bass": bass, "other": chords, "vocals": drums}, RATE)
    assert result.key == testtracks.key_name(tonic, mode)
    assert result.key == {0: "C major", 9: "A minor", 6: "F# major"}[tonic]


def test_a_drumless_ambient_track_has_no_steady_tempo():
    pad = testtracks.ambient_pad(seconds=30)
    # What a separation leaves in the drums stem of such a track: a faint copy of the pad.
    result = analysis.analyse_stems({"drums": 0.05 * pad, "bass": 0.3 * pad, "other": pad}, RATE)
    assert result.tempo_bpm is None
    assert result.beats == []
    assert result.key, "it still has a key"


def test_silence_has_no_tempo_and_no_key():
    result = analysis.analyse_stems(
        {"drums": np.zeros((2, RATE * 5)), "other": np.zeros((2, RATE * 5))}, RATE
    )
    assert result == analysis.TrackAnalysis(None, [], "")


@pytest.mark.django_db
def test_a_failing_analysis_leaves_the_figures_empty_and_logs_why(owner, make_job, caplog):
    job = make_job(owner, status="running")
    broken = torch.full((2, RATE * 5), float("nan"))  # librosa refuses audio that is not finite
    with caplog.at_level(logging.ERROR, logger="jobs.background.analysis"):
        assert analyse_separation(job, {"drums": broken, "other": broken}, RATE) is False
    job.refresh_from_db()
    assert (job.tempo_bpm, job.beats, job.key, job.analysed_at) == (None, [], "", None)
    assert "analysis failed" in caplog.text
    assert caplog.records[0].exc_info, "the traceback is in the log"


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_worker_measures_a_separated_track_and_every_page_shows_it(
    owner, owner_client, make_audio, run_worker, client
):
    job = upload(owner_client, make_audio("Groove.wav", seconds=6))
    assert run_worker().returncode == 0
    job.refresh_from_db()
    assert job.status == "succeeded", job.error_message
    assert job.analysed_at is not None, "measured during the run"
    assert job.tempo_and_key in owner_client.get(job.get_absolute_url()).content.decode()
    assert job.tempo_and_key in owner_client.get(reverse("job_list")).content.decode()

    from jobs.api.tokens import create_token

    token = create_token(owner, "script")[1]
    out = client.get(f"/api/jobs/{job.pk}", headers={"Authorization": f"Bearer {token}"}).json()
    assert (out["tempo_bpm"], out["beats"], out["key"], out["analysed"]) == (
        job.tempo_bpm,
        job.beats,
        job.key,
        True,
    )


def stored_stems(job, stems: dict[str, np.ndarray]) -> None:
    storage = job.input_file.storage
    for position, (name, samples) in enumerate(stems.items()):
        path = storage.path(f"hand-{name}.flac")
        soundfile.write(path, samples.T, RATE)
        stem = Stem(job=job, name=name, position=position)
        with open(path, "rb") as handle:
            stem.file.save(f"{name}.flac", File(handle), save=True)
        storage.delete(f"hand-{name}.flac")


@pytest.mark.django_db
def test_analyse_tracks_measures_old_jobs_and_dry_run_changes_nothing(owner, make_job, capsys):
    bass, chords = testtracks.progression(9, "minor", variant=0)
    job = make_job(owner, stems=())
    stored_stems(
        job,
        {"drums": testtracks.click_track(96, seconds=bass.shape[1] / RATE), "bass": bass, "other": chords},
    )
    done = make_job(owner, stems=())
    Job.objects.filter(pk=done.pk).update(analysed_at=job.created_at)

    call_command("analyse_tracks", "--dry-run")
    assert "Would analyse 1 job." in capsys.readouterr().out
    job.refresh_from_db()
    assert job.analysed_at is None

    call_command("analyse_tracks", verbosity=2)
    out = capsys.readouterr().out
    job.refresh_from_db()
    assert job.tempo_and_key == "96 BPM · A minor"
    assert "Analysed 1 job." in out
    call_command("analyse_tracks")
    assert "Analysed 0 jobs." in capsys.readouterr().out


@pytest.mark.django_db
def test_tempo_and_key_read_as_words_and_admin_filters_by_them(owner, make_job, staff_client):
    fast = make_job(owner, name="Fast.wav")
    fast.record_analysis(128.4, [0.5, 0.97], "A minor")
    ambient = make_job(owner, name="Ambient.wav")
    ambient.record_analysis(None, [], "F# major")
    make_job(owner, name="Old.wav")
    assert fast.tempo_and_key == "128 BPM · A minor"
    assert ambient.tempo_and_key == "no steady tempo · F# major"

    def listed(query: str) -> set[str]:
        page = staff_client.get(f"/admin/jobs/job/?{query}").content.decode()
        return {name for name in ("Fast.wav", "Ambient.wav", "Old.wav") if f">{name}<" in page}

    assert listed("key=A+minor") == {"Fast.wav"}
    assert listed("tempo=120-140") == {"Fast.wav"}
    assert listed("tempo=100-120") == set()
    assert listed("tempo=none") == {"Ambient.wav"}
    assert listed("tempo=unanalysed") == {"Old.wav"}


def test_a_stem_with_nothing_to_tune_by_is_measured_without_a_warning():
    """librosa warns when a stem leaves its tuning estimate nothing to read (a low hum, as random
    or near-empty stems give); the worker's console would show it for every such job."""
    t = np.arange(4 * analysis.ANALYSIS_RATE) / analysis.ANALYSIS_RATE
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        key = analysis.measure_key((0.2 * np.sin(2 * np.pi * 40 * t)).astype(np.float32))
    assert key
    assert [str(warning.message) for warning in caught] == []
