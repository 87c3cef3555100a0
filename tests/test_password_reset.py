"""Password reset by email, and the email address asked for at sign-up."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.urls import reverse

from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "a-brand-new-password-93"


def test_reset_by_email_sets_a_new_password(client, owner):
    owner.email = "owner@example.org"
    owner.save()

    response = client.post(reverse("password_reset"), {"email": "Owner@Example.org"})
    assert response.status_code == 302
    assert client.get(response["Location"]).status_code == 200
    [email] = mail.outbox
    assert email.to == ["owner@example.org"]
    assert "owner" in email.body
    link = re.search(r"http://testserver(/accounts/password/reset/\S+/)", email.body).group(1)

    form = client.get(link, follow=True)
    assert "Choose a new password" in form.content.decode()
    choice = {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
    done = client.post(form.redirect_chain[-1][0], choice, follow=True)
    assert "Password set" in done.content.decode()
    owner.refresh_from_db()
    assert owner.check_password(NEW_PASSWORD)

    assert client.post(reverse("login"), {"username": "owner", "password": NEW_PASSWORD}).status_code == 302
    again = client.get(link, follow=True).content.decode()
    assert "This link does not work" in again, "a reset link works once"


def test_reset_for_an_unknown_address_says_the_same_and_sends_nothing(client, owner):
    response = client.post(reverse("password_reset"), {"email": "nobody@example.org"})
    assert response.status_code == 302
    assert response["Location"] == reverse("password_reset_done")
    assert mail.outbox == []


def test_a_forged_reset_link_is_refused(client, owner):
    page = client.get(reverse("password_reset_confirm", args=["MQ", "set-password"]), follow=True)
    assert "This link does not work" in page.content.decode()
    owner.refresh_from_db()
    assert owner.check_password(PASSWORD)


def test_login_page_links_to_the_reset(client):
    assert f'href="{reverse("password_reset")}"' in client.get(reverse("login")).content.decode()


def test_sign_up_with_an_email(client):
    response = client.post(
        reverse("signup"),
        {"username": "newcomer", "email": "new@example.org", "password1": PASSWORD, "password2": PASSWORD},
    )
    assert response.status_code == 302
    assert get_user_model().objects.get(username="newcomer").email == "new@example.org"


def test_sign_up_email_is_optional(client):
    fields = {"username": "quiet", "password1": PASSWORD, "password2": PASSWORD}
    response = client.post(reverse("signup"), fields)
    assert response.status_code == 302
    assert get_user_model().objects.get(username="quiet").email == ""


def test_sign_up_email_must_not_belong_to_another_account(client, owner):
    owner.email = "owner@example.org"
    owner.save()
    response = client.post(
        reverse("signup"),
        {"username": "copycat", "email": "OWNER@example.org", "password1": PASSWORD, "password2": PASSWORD},
    )
    assert response.status_code == 200
    assert "An account with this email address already exists." in response.content.decode()
    assert not get_user_model().objects.filter(username="copycat").exists()
