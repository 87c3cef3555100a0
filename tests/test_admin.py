"""Staff run the site from Django admin."""

import pytest
from django.urls import reverse

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
