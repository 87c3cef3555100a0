"""Log lines: a worker's console shows what happens to jobs, each line naming its job; JSON for collectors."""

import json

import pytest

from tests.test_worker import upload

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.database_agnostic]


def test_worker_console_names_the_job_and_leaves_out_rq_housekeeping(owner_client, make_audio, run_worker):
    job = upload(owner_client, make_audio("song.wav", seconds=1))

    result = run_worker()

    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert not [line for line in lines if "cleaning registries" in line], result.stderr
    about_the_job = [line for line in lines if str(job.pk) in line]
    taken, *run = about_the_job
    assert f"separations: separate {job.pk} (attempt 1)" in taken, "RQ's line names it as it takes it"
    assert any("Job OK" in line for line in run), result.stderr
    assert all(line.endswith(f"[job {job.pk}]") for line in run), result.stderr


def test_json_logs_are_one_object_per_line_with_housekeeping_at_debug(owner_client, make_audio, run_worker):
    job = upload(owner_client, make_audio("song.wav", seconds=1))

    result = run_worker({"STEMSITE_LOG_FORMAT": "json", "LOG_LEVEL": "DEBUG"})

    assert result.returncode == 0, result.stderr
    entries = [json.loads(line) for line in result.stderr.splitlines()]
    housekeeping = [entry for entry in entries if "cleaning registries" in entry["message"]]
    assert housekeeping, result.stderr
    assert {entry["level"] for entry in housekeeping} == {"DEBUG"}
    finished = [entry for entry in entries if "Job OK" in entry["message"]]
    assert [(entry["level"], entry["logger"], entry.get("job_id")) for entry in finished] == [
        ("INFO", "rq.worker", str(job.pk))
    ]
    assert "trace_id" not in finished[0], "tracing is off"
