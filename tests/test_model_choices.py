"""Only the models the site really has, and only the precisions its workers' hardware runs: on the
form, in the API, in health, from the folder and from what live workers report."""

import json
import re

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from jobs.capabilities import REPORT_FIELD, site_capabilities
from jobs.catalog import models_in_folder
from jobs.engine import execution, separation
from jobs.engine.testmodel import write_model
from jobs.models import Job
from jobs.options import MODELS
from tests.conftest import media_files
from tests.test_api import assert_error, bearer
from tests.test_worker import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def folder_with(tmp_path, settings):
    """A model folder holding only the named models, made the site's STEMSITE_MODEL_REPO."""

    def make(*names: str):
        folder = tmp_path / "models"
        for name in names:
            write_model(folder, name)
        settings.STEMSITE_MODEL_REPO = str(folder)
        return folder

    return make


def post(client, path, **fields):
    with path.open("rb") as handle:
        return client.post(reverse("job_create"), {"files": handle, **fields})


def offered_on_page(page: str) -> list[str]:
    return [name for name in MODELS if f'name="model" value="{name}"' in page]


def test_the_form_offers_only_the_models_in_the_folder_and_defaults_to_the_sites(
    owner_client, folder_with, settings
):
    folder_with("htdemucs_6s", "mdx_extra")
    settings.STEMSITE_MODEL = "mdx_extra"

    page = owner_client.get(reverse("job_list")).content.decode()

    assert offered_on_page(page) == ["htdemucs_6s", "mdx_extra"]
    assert re.search(r'<input[^>]*name="model" value="mdx_extra"[^>]*checked', page)


def test_the_site_model_missing_from_the_folder_leaves_the_first_one_found_as_default(
    owner_client, folder_with
):
    folder_with("htdemucs_6s")
    page = owner_client.get(reverse("job_list")).content.decode()
    assert offered_on_page(page) == ["htdemucs_6s"]
    assert re.search(r'<input[^>]*name="model" value="htdemucs_6s"[^>]*checked', page)


def test_a_model_not_on_offer_is_refused_with_a_sentence_and_nothing_is_stored(
    owner_client, owner, folder_with, make_audio, media_root
):
    folder_with("htdemucs_6s")
    source = make_audio("song.wav", seconds=1)

    response = post(owner_client, source, model="htdemucs")

    assert response.status_code == 400
    assert "The model “htdemucs” is not available on this site. Choose one of: htdemucs_6s." in (
        response.content.decode()
    )
    assert not Job.objects.exists()
    assert media_files(media_root) == []


def test_the_api_lists_the_models_and_refuses_one_not_on_offer(client, owner, folder_with, make_audio):
    from jobs.api.tokens import create_token

    token = create_token(owner, "script")[1]
    folder_with("htdemucs", "htdemucs_6s")

    listing = client.get("/api/models", headers=bearer(token)).json()
    assert [model["name"] for model in listing["models"]] == ["htdemucs", "htdemucs_6s"]
    assert listing["models"][1]["stems"] == list(MODELS["htdemucs_6s"].stems)
    assert (listing["default_model"], listing["default_precision"]) == ("htdemucs", "full")
    assert [precision["name"] for precision in listing["precisions"]] == ["full"]
    assert listing["unavailable"] is None

    with make_audio("song.wav", seconds=1).open("rb") as handle:
        response = client.post("/api/jobs", {"file": handle, "model": "mdx_extra"}, headers=bearer(token))
    error = assert_error(response, 400, "invalid")
    assert "model: The model “mdx_extra” is not available on this site" in error["message"]
    assert not Job.objects.exists()


@pytest.mark.slow
def test_workers_that_cannot_load_the_model_stop_uploads_before_anything_is_stored(
    client, owner, owner_client, start_worker, tmp_path, make_audio, media_root
):
    from jobs.api.tokens import create_token

    empty = tmp_path / "no-models"
    empty.mkdir()
    start_worker(extra_env={"STEMSITE_MODEL_REPO": str(empty)})
    wait_until(lambda: site_capabilities().reported, timeout=90)

    page = owner_client.get(reverse("job_list")).content.decode()
    assert "Separation is unavailable on this site right now." in page
    assert "could not be loaded from the model folder" in page
    assert "data-unavailable" in page
    assert '<button type="submit" disabled>' in page

    response = post(owner_client, make_audio("song.wav", seconds=1))
    assert response.status_code == 400
    assert "Nothing was uploaded." in response.content.decode()

    token = create_token(owner, "script")[1]
    with make_audio("other.wav", seconds=1).open("rb") as handle:
        response = client.post("/api/jobs", {"file": handle}, headers=bearer(token))
    error = assert_error(response, 503, "model_unavailable")
    assert error["message"].startswith("Separation is unavailable on this site right now.")
    listing = client.get("/api/models", headers=bearer(token)).json()
    assert listing["models"] == []
    assert listing["unavailable"].startswith("Separation is unavailable")
    assert not Job.objects.exists()
    assert media_files(media_root) == []

    health = client.get(reverse("health"))
    assert health.status_code == 503
    assert any("cannot load their model" in problem for problem in health.json()["problems"])


@pytest.mark.slow
def test_a_worker_reports_the_models_it_found_and_what_its_hardware_runs(start_worker, redis_db, model_repo):
    start_worker()
    reports = wait_until(lambda: site_capabilities().reported and redis_reports(redis_db), timeout=90)

    [report] = reports
    assert report["models"] == models_in_folder(model_repo)
    assert report["model_error"] == ""
    assert report["half"] == execution.half_arithmetic("cpu")
    expected = ("full", "half") if report["half"] else ("full",)
    assert site_capabilities().precisions == expected


def redis_reports(redis_db) -> list[dict]:
    keys = [key for key in redis_db.keys("rq:worker:*") if redis_db.hexists(key, REPORT_FIELD)]
    return [json.loads(redis_db.hget(key, REPORT_FIELD)) for key in keys]


def test_half_precision_is_offered_only_when_every_worker_runs_it(owner_client, reporting_worker):
    reporting_worker(half="bf16")
    page = owner_client.get(reverse("job_list")).content.decode()
    assert 'name="precision" value="half"' in page
    assert "About twice as fast" in page
    assert "(bf16)" in page

    reporting_worker(half=None)
    page = owner_client.get(reverse("job_list")).content.decode()
    assert 'name="precision"' not in page


def test_without_reports_only_full_precision_is_offered(owner_client):
    page = owner_client.get(reverse("job_list")).content.decode()
    assert 'name="precision"' not in page
    assert offered_on_page(page) == list(MODELS)


def test_the_folder_listing_agrees_with_demucs_loader(tmp_path, model_repo):
    listed = models_in_folder(model_repo)
    assert listed == list(MODELS)
    for name in listed:
        assert separation.load_model(name, str(model_repo), cache_size=1) is not None

    write_model(tmp_path, "htdemucs_ft")
    next(tmp_path.glob("htdemucs_ft_tiny_2-*.th")).unlink()  # a bag with a member missing
    (tmp_path / "notes.yaml").write_text("- not a bag")
    (tmp_path / "htdemucs_6s.yaml").write_text(": not yaml :")
    assert models_in_folder(tmp_path) == []
    with pytest.raises(separation.ModelUnavailable):
        separation.load_model("htdemucs_ft", str(tmp_path), cache_size=1)


def test_check_model_reports_every_model_it_finds(folder_with, capsys, settings):
    folder_with("htdemucs", "htdemucs_6s")
    call_command("check_model")
    out = capsys.readouterr().out
    assert "Model 'htdemucs' is ready" in out
    assert "Model 'htdemucs_6s' is ready" in out
    assert "offers the models found in" in out
    assert "htdemucs, htdemucs_6s" in out


def test_check_model_fails_when_the_site_model_is_missing(folder_with, settings):
    folder_with("htdemucs_6s")
    with pytest.raises(CommandError, match="The site's model 'htdemucs' does not load"):
        call_command("check_model")
