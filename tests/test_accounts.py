"""Accounts: sign up, log in, log out, change password."""

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def test_sign_up_creates_the_account_and_logs_in(client):
    response = client.post(
        reverse("signup"), {"username": "newcomer", "password1": PASSWORD, "password2": PASSWORD}
    )
    assert response.status_code == 302
    assert get_user_model().objects.filter(username="newcomer").exists()
    assert client.get(reverse("job_list")).status_code == 200


def test_sign_up_rejects_mismatched_passwords(client):
    response = client.post(reverse("signup"), {"username": "x", "password1": PASSWORD, "password2": "other"})
    assert response.status_code == 200
    assert "didn’t match" in response.content.decode()
    assert not get_user_model().objects.filter(username="x").exists()


def test_log_in_and_out(client, owner):
    response = client.post(reverse("login"), {"username": "owner", "password": PASSWORD})
    assert response.status_code == 302
    assert client.get(reverse("job_list")).status_code == 200
    client.post(reverse("logout"))
    assert client.get(reverse("job_list")).status_code == 302


def test_wrong_password_is_refused(client, owner):
    response = client.post(reverse("login"), {"username": "owner", "password": "wrong"})
    assert response.status_code == 200
    assert "correct username and password" in response.content.decode()


def test_password_change(owner_client, owner):
    new = "another-long-password-77"
    response = owner_client.post(
        reverse("password_change"), {"old_password": PASSWORD, "new_password1": new, "new_password2": new}
    )
    assert response.status_code == 302
    owner.refresh_from_db()
    assert owner.check_password(new)
