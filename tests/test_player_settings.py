"""Player settings per user and job: saved as the player sends them, checked, given back with the page."""

import json

import pytest
from django.urls import reverse

from jobs.models import PlayerSettings
from jobs.practice import MSG_SEMITONES, MSG_TEMPO, loop_message

pytestmark = pytest.mark.django_db

SETTINGS = {
    "levels": {"vocals": 0.5, "drums": 1.25}, "muted": ["bass"], "soloed": [], "tempo": 85, "semitones": -2,
    "loop": {"start": 0.25, "end": 0.75}, "click": True, "click_volume": 0.4, "count_in": True,
}  # fmt: skip


def page_settings(client, job) -> dict:
    """The settings the job's page hands its player (PostgreSQL's jsonb keeps no key order)."""
    page = client.get(job.get_absolute_url()).content.decode()
    start = page.index('<script id="player-settings" type="application/json">')
    return json.loads(page[page.index(">", start) + 1 : page.index("</script>", start)])


def save(client, job, values):
    return client.post(
        reverse("job_player_settings", args=[job.pk]), json.dumps(values), content_type="application/json"
    )


def test_saved_settings_come_back_with_the_page_and_on_their_own(owner_client, owner, make_job):
    job = make_job(owner, duration_seconds=1.0)
    response = save(owner_client, job, SETTINGS)
    assert response.status_code == 200, response.content
    assert response.json()["settings"] == SETTINGS

    assert page_settings(owner_client, job) == SETTINGS
    assert owner_client.get(reverse("job_player_settings", args=[job.pk])).json() == {"settings": SETTINGS}

    save(owner_client, job, {**SETTINGS, "tempo": 100, "loop": None})
    assert PlayerSettings.objects.get().values["tempo"] == 100, "saving again replaces, one row per job"
    assert PlayerSettings.objects.count() == 1


def test_settings_are_per_user(owner_client, staff_client, owner, make_job):
    job = make_job(owner, duration_seconds=1.0)
    save(owner_client, job, SETTINGS)
    assert staff_client.get(reverse("job_player_settings", args=[job.pk])).json() == {"settings": {}}
    assert page_settings(staff_client, job) == {}


def test_outsider_can_neither_read_nor_write_them(outsider_client, owner_client, owner, make_job):
    job = make_job(owner, duration_seconds=1.0, name="Secret Song.wav")
    save(owner_client, job, SETTINGS)
    url = reverse("job_player_settings", args=[job.pk])
    for response in (outsider_client.get(url), save(outsider_client, job, {"tempo": 50})):
        assert response.status_code == 404
        assert b"Secret Song" not in response.content
    assert PlayerSettings.objects.get().values["tempo"] == 85


@pytest.mark.parametrize(
    ("values", "sentence"),
    [
        ({"tempo": 151}, MSG_TEMPO),
        ({"tempo": "fast"}, MSG_TEMPO),
        ({"semitones": 12.5}, MSG_SEMITONES),
        ({"levels": {"vocals": 3}}, "The level of vocals must be a number from 0 to 2."),
        ({"muted": ["guitar"]}, "This track has no stem named guitar."),
        ({"loop": {"start": 0.9, "end": 0.2}}, loop_message(1.0)),
        ({"click_volume": 2}, "The click volume must be a number from 0 to 1."),
        ({"volume": 1}, "Unknown player setting: volume."),
        ([1, 2], "Send the player settings as a JSON object."),
    ],
)
def test_bad_settings_are_refused_with_a_sentence_and_nothing_kept(
    owner_client, owner, make_job, values, sentence
):
    job = make_job(owner, duration_seconds=1.0)
    response = save(owner_client, job, values)
    assert response.status_code == 400
    assert response.json() == {"error": sentence}
    assert not PlayerSettings.objects.exists()


def test_settings_go_with_their_job(owner_client, owner, make_job):
    job = make_job(owner, duration_seconds=1.0)
    save(owner_client, job, SETTINGS)
    owner_client.post(reverse("job_delete", args=[job.pk]))
    assert not PlayerSettings.objects.exists()
