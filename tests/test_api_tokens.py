"""API tokens on the account page: shown once, stored hashed, listed by prefix, revocable by their owner."""

import hashlib
import re

import pytest
from django.urls import reverse

from jobs.models import ApiToken

pytestmark = pytest.mark.django_db

TOKEN = re.compile(r'value="(stm_[A-Za-z0-9_-]+)"')


def create(client, name="laptop script"):
    return client.post(reverse("token_create"), {"name": name})


def test_new_token_is_shown_once_and_stored_only_as_its_hash(owner_client, owner):
    response = create(owner_client)
    assert response.status_code == 200
    page = response.content.decode()
    assert "Copy it now: it is not shown again." in page
    raw = TOKEN.search(page)[1]
    token = ApiToken.objects.get()
    assert (token.user, token.name, token.prefix) == (owner, "laptop script", raw[:10])
    assert token.token_hash == hashlib.sha256(raw.encode()).hexdigest()
    assert raw not in str(ApiToken.objects.values_list())
    assert response["Cache-Control"] == "no-store"

    again = owner_client.get(reverse("account")).content.decode()
    assert raw not in again, "the token is never shown again"
    assert f"{token.prefix}…" in again
    assert "laptop script" in again


def test_created_token_calls_the_api_until_revoked(owner_client, client):
    raw = TOKEN.search(create(owner_client).content.decode())[1]
    headers = {"Authorization": f"Bearer {raw}"}
    assert client.get("/api/jobs", headers=headers).status_code == 200
    token = ApiToken.objects.get()
    response = owner_client.post(reverse("token_revoke"), {"token_id": token.pk})
    assert response.status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert client.get("/api/jobs", headers=headers).status_code == 401
    assert "laptop script" not in owner_client.get(reverse("account")).content.decode()


def test_token_without_a_name_is_refused_with_a_sentence(owner_client):
    response = create(owner_client, name="  ")
    assert response.status_code == 400
    assert "Give the token a name" in response.content.decode()
    assert not ApiToken.objects.exists()


def test_other_users_token_cannot_be_revoked(owner_client, outsider_client):
    create(owner_client)
    token = ApiToken.objects.get()
    for value in (token.pk, "x", ""):
        assert outsider_client.post(reverse("token_revoke"), {"token_id": value}).status_code == 404
    token.refresh_from_db()
    assert token.revoked_at is None


def test_anonymous_cannot_make_tokens(client):
    response = create(client)
    assert response.status_code == 302
    assert reverse("login") in response["Location"]
    assert not ApiToken.objects.exists()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_token_made_in_the_browser_calls_the_live_api(live_web, owner):
    import json
    import urllib.request

    from playwright.sync_api import expect, sync_playwright

    from tests.test_browser import CHROMIUM, CHROMIUM_FLAGS, SCREENSHOTS, log_in

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1000, "height": 1100})
        log_in(page, live_web)
        page.goto(f"{live_web}/accounts/")
        page.fill("input[name=name]", "backup script")
        page.click("text=Create token")
        expect(page.locator("#new-token")).to_contain_text("Copy it now: it is not shown again.")
        raw = page.locator("#new-token input").input_value()
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "account-api-token.png"), full_page=True)
        browser.close()

    request = urllib.request.Request(f"{live_web}/api/jobs", headers={"Authorization": f"Bearer {raw}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
        assert json.load(response)["count"] == 0
