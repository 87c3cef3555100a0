"""Staff run the site from Django admin."""

import re
from datetime import timedelta

import django_rq
import pytest
from django.conf import settings
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from jobs.background.tasks import job_timeout
from jobs.models import Job
from tests.conftest import media_files

pytestmark = pytest.mark.django_db


def test_job_admin_lists_filters_and_searches(staff_client, owner, outsider, make_job):
    make_job(owner, name="alpha.wav")
    make_job(outsider, name="beta.wav", status="failed")
    url = reverse("admin:jobs_job_changelist")

    page = staff_client.get(url).content.decode()
    assert "alpha.wav" in page
    assert "beta.wav" in page
    for label in ("By status", "By model name", "By owner"):
        assert label in page

    failed = staff_client.get(url, {"status__exact": "failed"}).content.decode()
    assert "beta.wav" in failed
    assert "alpha.wav" not in failed
    found = staff_client.get(url, {"q": "outsider"}).content.decode()
    assert "beta.wav" in found
    assert "alpha.wav" not in found


def test_job_admin_change_page_shows_timings_read_only(staff_client, owner, make_job):
    job = make_job(owner)
    page = staff_client.get(reverse("admin:jobs_job_change", args=[job.pk])).content.decode()
    assert 'name="started_at"' not in page
    assert 'name="finished_at"' not in page
    assert "Started at" in page
    assert "vocals" in page


def test_stem_admin_lists_stems(staff_client, owner, make_job):
    make_job(owner, name="gamma.wav")
    page = staff_client.get(reverse("admin:jobs_stem_changelist"), {"q": "gamma"}).content.decode()
    assert page.count("gamma.wav: ") == 4


def test_non_staff_cannot_open_admin(owner_client):
    assert owner_client.get(reverse("admin:jobs_job_changelist")).status_code == 302


# Actions, filters and usage.


def run_action(client, action: str, *jobs, follow=True):
    return client.post(
        reverse("admin:jobs_job_changelist"),
        {"action": action, "_selected_action": [str(job.pk) for job in jobs]},
        follow=follow,
    )


def test_retry_action_queues_failed_jobs_again(staff_client, owner, make_job, redis_db):
    failed = make_job(owner, status="failed", error_message="boom")
    done = make_job(owner, name="done.wav")
    page = run_action(staff_client, "retry_jobs", failed, done).content.decode()

    failed.refresh_from_db()
    done.refresh_from_db()
    assert (failed.status, failed.attempt) == ("queued", 2)
    assert done.status == "succeeded"
    assert "1 job queued again." in page
    assert "1 skipped: not failed or canceled" in page
    queue = django_rq.get_queue(settings.STEMSITE_QUEUE)
    assert queue.job_ids == [failed.rq_job_id]


def test_retry_action_skips_a_job_whose_identical_upload_is_already_active(
    staff_client, owner, make_job, redis_db
):
    failed = make_job(owner, status="failed", error_message="boom", dedupe_key="same-audio-and-options")
    active = make_job(owner, name="again.wav", status="queued", dedupe_key="same-audio-and-options")
    response = run_action(staff_client, "retry_jobs", failed)

    assert response.status_code == 200
    assert "1 skipped" in response.content.decode()
    failed.refresh_from_db()
    assert (failed.status, failed.attempt) == ("failed", 1)
    assert Job.objects.get(pk=active.pk).status == "queued"


def test_cancel_action_cancels_unfinished_jobs(staff_client, owner, make_job):
    queued = make_job(owner, status="queued")
    done = make_job(owner, name="done.wav")
    page = run_action(staff_client, "cancel_jobs", queued, done).content.decode()

    queued.refresh_from_db()
    assert queued.status == "canceled"
    assert Job.objects.get(pk=done.pk).status == "succeeded"
    assert "1 job canceled." in page


def test_delete_removes_finished_jobs_with_their_files_and_keeps_running_ones(
    staff_client, owner, make_job, media_root
):
    done = make_job(owner, name="done.wav")
    running = make_job(owner, name="busy.wav", status="running")
    confirm = run_action(staff_client, "delete_with_files", done, running, follow=False).content.decode()
    assert "Are you sure" in confirm
    assert "1 queued or running job is left out: cancel first." in confirm
    assert "done.wav" in confirm
    assert "busy.wav" not in confirm

    page = staff_client.post(
        reverse("admin:jobs_job_changelist"),
        {"action": "delete_with_files", "_selected_action": [str(done.pk), str(running.pk)], "post": "yes"},
        follow=True,
    ).content.decode()
    assert not Job.objects.filter(pk=done.pk).exists()
    assert Job.objects.filter(pk=running.pk).exists()
    assert "Successfully deleted 1 job." in page
    assert [p for p in media_files(media_root) if str(done.pk) in str(p)] == []
    assert [p for p in media_files(media_root) if str(running.pk) in str(p)] != []


def test_delete_from_the_change_page_removes_the_files(staff_client, owner, make_job, media_root):
    job = make_job(owner)
    response = staff_client.post(reverse("admin:jobs_job_delete", args=[job.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert not Job.objects.filter(pk=job.pk).exists()
    assert media_files(media_root) == []


def test_a_running_job_cannot_be_deleted_from_its_page(staff_client, owner, make_job):
    job = make_job(owner, status="running")
    assert (
        staff_client.post(reverse("admin:jobs_job_delete", args=[job.pk]), {"post": "yes"}).status_code == 403
    )
    assert Job.objects.filter(pk=job.pk).exists()


def changelist(client, **params) -> str:
    return client.get(reverse("admin:jobs_job_changelist"), params).content.decode()


def test_stuck_filter_finds_jobs_past_their_time_limit_or_long_queued(
    staff_client, owner, make_job, settings
):
    now = timezone.now()
    limit = job_timeout(60, make_job(owner, name="ref.wav").job_options)
    make_job(owner, name="overdue.wav", status="running", duration_seconds=60,
             started_at=now - timedelta(seconds=limit + 60))  # fmt: skip
    make_job(owner, name="working.wav", status="running", duration_seconds=60,
             started_at=now - timedelta(seconds=limit - 60))  # fmt: skip
    make_job(owner, name="waiting.wav", status="queued",
             queued_at=now - timedelta(minutes=settings.STEMSITE_STUCK_QUEUED_MINUTES + 1))  # fmt: skip
    make_job(owner, name="fresh.wav", status="queued", queued_at=now)

    running = changelist(staff_client, stuck="running")
    assert "overdue.wav" in running
    assert "working.wav" not in running
    queued = changelist(staff_client, stuck="queued")
    assert "waiting.wav" in queued
    assert "fresh.wav" not in queued


def test_old_filter_finds_jobs_finished_long_ago(staff_client, owner, make_job):
    now = timezone.now()
    make_job(owner, name="ancient.wav", finished_at=now - timedelta(days=40))
    make_job(owner, name="recent.wav", finished_at=now - timedelta(days=2))
    make_job(owner, name="old-but-queued.wav", status="queued", created_at=now - timedelta(days=40))

    page = changelist(staff_client, finished_before="30")
    assert "ancient.wav" in page
    assert "recent.wav" not in page
    assert "old-but-queued.wav" not in page


def test_user_admin_shows_each_users_jobs_and_storage(staff_client, owner, outsider, make_job):
    job = make_job(owner, input_size=3 * 1024 * 1024)
    make_job(owner, status="queued", input_size=1024 * 1024)
    used = 4 * 1024 * 1024 + sum(job.stems.values_list("size", flat=True))

    page = staff_client.get(reverse("admin:auth_user_changelist")).content.decode().replace("\xa0", " ")
    row = re.search(r"<tr>.*?>owner</a>.*?</tr>", page, re.S).group(0)
    cells = re.findall(r'<td class="field-(\w+)[^"]*">(.*?)</td>', row)
    values = dict(cells)
    assert values["job_count"] == "2"
    assert values["active_jobs"] == "1"
    assert values["storage"] == f"{used / 1024 / 1024:.1f} MB"
    other = re.search(r"<tr>.*?>outsider</a>.*?</tr>", page, re.S).group(0)
    assert '<td class="field-storage">0 bytes</td>' in other


# The queue dashboard: superusers only.


@pytest.fixture
def plain_staff_client(django_user_model):
    user = django_user_model.objects.create_user("helper", password="x-long-password-1", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label__in=["jobs", "django_rq"]))
    client = Client()
    client.force_login(user)
    return client


def dashboard_urls() -> list[str]:
    index = reverse("admin:django_rq_dashboard_changelist")
    return [
        index,
        reverse("admin:django_rq_home"),
        reverse("admin:django_rq_jobs", args=[0]),
        reverse("admin:django_rq_workers", args=[0]),
        reverse("admin:django_rq_home_json"),
    ]


def test_superuser_reaches_the_queue_dashboard_from_admin(staff_client):
    index = staff_client.get(reverse("admin:index")).content.decode()
    assert reverse("admin:django_rq_dashboard_changelist") in index
    for url in dashboard_urls():
        assert staff_client.get(url).status_code == 200, url


def test_other_staff_get_403_from_the_queue_dashboard(plain_staff_client, redis_db, owner, make_job):
    index = plain_staff_client.get(reverse("admin:index")).content.decode()
    assert reverse("admin:django_rq_dashboard_changelist") not in index
    for url in dashboard_urls():
        assert plain_staff_client.get(url).status_code == 403, url

    queue = django_rq.get_queue(settings.STEMSITE_QUEUE)
    queue.enqueue("jobs.background.tasks.separate_job", "x", job_id="keep-me")
    response = plain_staff_client.post(reverse("admin:django_rq_clear", args=[0]), {"post": "yes"})
    assert response.status_code == 403
    assert queue.job_ids == ["keep-me"], "the queue must not be emptied"


def test_other_staff_still_run_jobs_admin(plain_staff_client, owner, make_job):
    make_job(owner, name="visible.wav")
    assert "visible.wav" in changelist(plain_staff_client)
