"""Three queues: mix exports and webhooks run on the short queue's own worker, and downloads of imports
on the imports queue's, never behind separations."""

import django_rq
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from rq import Worker

from jobs.control import cancel_job
from jobs.models import Job, MixExport
from tests.test_export import export_in, post_export
from tests.test_faults import supervisor  # noqa: F401 (a fixture)
from tests.test_worker import upload, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.database_agnostic]

SEPARATIONS, SHORT, IMPORTS = (
    settings.STEMSITE_QUEUE,
    settings.STEMSITE_SHORT_QUEUE,
    settings.STEMSITE_IMPORT_QUEUE,
)


def workers_on(queue: str) -> int:
    return Worker.count(queue=django_rq.get_queue(queue))


@pytest.mark.slow
def test_export_finishes_while_a_separation_is_still_running(
    owner, owner_client, make_audio, make_job, start_worker
):
    start_worker([SHORT])
    wait_until(lambda: workers_on(SHORT) == 1, timeout=60)
    separating = upload(owner_client, make_audio("long.flac", seconds=120))
    start_worker([SEPARATIONS])
    wait_until(lambda: Job.objects.get(pk=separating.pk).status == "running")
    finished = make_job(owner, name="Finished.wav")

    export = export_in(post_export(owner_client, finished, "wav", gain_vocals="0.5"))
    wait_until(lambda: MixExport.objects.get(pk=export.pk).status in ("succeeded", "failed"), timeout=60)

    export.refresh_from_db()
    assert export.status == "succeeded", export.error_message
    separating.refresh_from_db()
    assert separating.status == "running", "the export must not have waited for the separation"
    assert separating.progress < 100
    assert cancel_job(separating), "the separations worker stops the run, so the test ends quickly"


@pytest.mark.slow
def test_short_queue_worker_runs_exports_without_loading_a_model(owner, owner_client, make_job, run_worker):
    export = export_in(post_export(owner_client, make_job(owner), "mp3"))
    assert django_rq.get_queue(SEPARATIONS).count == 0

    result = run_worker(queues=[SHORT])

    assert result.returncode == 0, result.stderr
    export.refresh_from_db()
    assert export.status == "succeeded", export.error_message
    assert "Loaded model" not in result.stderr
    assert "Loaded model htdemucs" in run_worker(queues=[SEPARATIONS]).stderr


def test_run_workers_starts_the_asked_number_of_workers_per_queue(supervisor):  # noqa: F811
    supervisor(workers=2)
    wait_until(
        lambda: (workers_on(SEPARATIONS), workers_on(SHORT), workers_on(IMPORTS)) == (2, 1, 1), timeout=90
    )


def test_workers_only_supervisor_runs_no_scheduler(supervisor, redis_db):  # noqa: F811
    lock = f"rq:scheduler-lock:{SHORT}"
    supervisor(queues=SHORT, workers_only=True)
    wait_until(lambda: workers_on(SHORT) == 1, timeout=60)
    assert redis_db.get(lock) is None, "a workers-only supervisor must leave scheduling to another"

    supervisor(queues=SHORT)
    wait_until(lambda: redis_db.get(lock), timeout=60)


@pytest.mark.parametrize(
    ("queues", "message"),
    [
        (
            "separations,nope",
            "Unknown queue 'nope' in --queues; the site's queues are: separations, short, imports.",
        ),
        ("short,short=2", "The short queue is named twice in --queues."),
        ("short=0", "--queues: 'short=0' needs a whole number of workers of at least 1."),
        (" , ", "--queues needs at least one queue; the site's queues are: separations, short, imports."),
    ],
)
def test_run_workers_refuses_a_bad_queue_list_with_a_sentence(queues, message):
    with pytest.raises(CommandError) as raised:
        call_command("run_workers", queues=queues)
    assert str(raised.value) == message
