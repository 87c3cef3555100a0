"""Promises of the code's layout: the engine never imports Django, and work queued by an earlier
version, under the dotted names RQ stored then, still runs after the move to jobs/background/."""

import subprocess
import sys

import django_rq
import pytest
from django.conf import settings

from jobs.background.exports import export_rq_id, request_export
from jobs.models import MixExport
from tests.conftest import ROOT
from tests.test_worker import upload

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.database_agnostic]

IMPORT_THE_ENGINE = """
import importlib, pkgutil, sys
import jobs.engine
names = [m.name for m in pkgutil.iter_modules(jobs.engine.__path__)]
for name in names:
    importlib.import_module(f"jobs.engine.{name}")
print(",".join(sorted(names)))
print(",".join(sorted(n for n in sys.modules if n.split(".")[0] == "django")))
"""


def test_every_engine_module_imports_without_django():
    env = {"PATH": "/usr/bin:/bin", "HOME": str(ROOT)}  # no DJANGO_SETTINGS_MODULE either
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_THE_ENGINE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    modules, django_modules = result.stdout.splitlines()
    assert {"audio", "separation", "execution", "openvino_runtime", "peaks", "testmodel"} <= set(
        modules.split(",")
    )
    assert django_modules == ""


def test_a_separation_queued_under_its_old_name_runs_after_the_upgrade(owner_client, make_audio, run_worker):
    job = upload(owner_client, make_audio("Queued before.wav", seconds=2))
    queue = django_rq.get_queue(settings.STEMSITE_QUEUE)
    queue.empty()
    queue.enqueue(
        "jobs.tasks.separate_job", str(job.pk), job.attempt, job_id=job.rq_job_id, meta={"model": "htdemucs"}
    )

    result = run_worker(queues=[settings.STEMSITE_QUEUE])

    assert result.returncode == 0, result.stderr
    job.refresh_from_db()
    assert job.status == "succeeded", job.error_message
    assert job.stems.count() == 4


def test_a_mix_export_queued_under_its_old_name_runs_after_the_upgrade(owner, make_job, run_worker):
    job = make_job(owner)
    export = request_export(job, {stem.name: 1.0 for stem in job.stems.all()}, "mp3")
    queue = django_rq.get_queue(settings.STEMSITE_SHORT_QUEUE)
    queue.empty()
    queue.enqueue("jobs.exports.render_export", str(export.pk), job_id=export_rq_id(export.pk))

    result = run_worker(queues=[settings.STEMSITE_SHORT_QUEUE])

    assert result.returncode == 0, result.stderr
    export.refresh_from_db()
    assert export.status == MixExport.Status.SUCCEEDED, export.error_message
    assert export.file
    assert export.size > 0
