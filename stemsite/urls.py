from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path

from jobs import monitoring
from jobs import views as job_views
from jobs.api.api import api
from jobs.api.errors import api_not_found

urlpatterns = [
    path("", include("jobs.urls")),
    # Before the API mount: a plain view, so health does not depend on the API app.
    path("api/health", monitoring.health, name="health"),
    path("metrics", monitoring.metrics, name="metrics"),
    path(
        "accounts/webhook-secret/rotate/",
        job_views.webhook_secret_rotate,
        name="webhook_secret_rotate",
    ),
    path("accounts/", job_views.account, name="account"),
    path("accounts/tokens/", job_views.token_create, name="token_create"),
    path("accounts/tokens/revoke/", job_views.token_revoke, name="token_revoke"),
    path("accounts/signup/", job_views.signup, name="signup"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path(
        "accounts/password/",
        auth_views.PasswordChangeView.as_view(),
        name="password_change",
    ),
    path(
        "accounts/password/done/",
        auth_views.PasswordChangeDoneView.as_view(),
        name="password_change_done",
    ),
    path("accounts/password/reset/", auth_views.PasswordResetView.as_view(), name="password_reset"),
    path(
        "accounts/password/reset/sent/",
        auth_views.PasswordResetDoneView.as_view(),
        name="password_reset_done",
    ),
    path(
        "accounts/password/reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path(
        "accounts/password/reset/complete/",
        auth_views.PasswordResetCompleteView.as_view(),
        name="password_reset_complete",
    ),
    path("admin/", admin.site.urls),
    path("api/", api_not_found),  # before the mount: ninja's own root answers an HTML 404
    path("api/", api.urls),
    re_path(r"^api/(?P<rest>.*)$", api_not_found),  # a JSON 404, never the HTML page, anywhere under /api/
]

handler400 = "jobs.views.bad_request"
