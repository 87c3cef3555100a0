from django.urls import path

from jobs import views
from jobs.sharing import views as share_views

urlpatterns = [
    path("", views.job_list, name="job_list"),
    path("jobs/new/", views.job_create, name="job_create"),
    path("jobs/<uuid:job_id>/", views.job_detail, name="job_detail"),
    path("jobs/<uuid:job_id>/cancel/", views.job_cancel, name="job_cancel"),
    path("jobs/<uuid:job_id>/retry/", views.job_retry, name="job_retry"),
    path("jobs/<uuid:job_id>/delete/", views.job_delete, name="job_delete"),
    path("jobs/<uuid:job_id>/stems/<slug:stem_name>/", views.stem_file, name="stem_file"),
    path("jobs/<uuid:job_id>/stems.zip", views.stems_zip, name="stems_zip"),
    path("jobs/<uuid:job_id>/player/", views.job_player_settings, name="job_player_settings"),
    path("jobs/<uuid:job_id>/exports/", views.export_create, name="export_create"),
    path("jobs/<uuid:job_id>/exports/<uuid:export_id>/", views.export_file, name="export_file"),
    path("jobs/<uuid:job_id>/shares/", views.share_create, name="share_create"),
    path("jobs/<uuid:job_id>/shares/<int:share>/revoke/", views.share_revoke, name="share_revoke"),
    # Share links: the token is the only key; whoever has it sees this one job's player.
    path("s/<str:token>/", share_views.share_page, name="share_page"),
    path("s/<str:token>/play/<slug:stem_name>/", share_views.share_play, name="share_play"),
    path("s/<str:token>/stems/<slug:stem_name>/", share_views.share_stem, name="share_stem"),
    path("s/<str:token>/stems.zip", share_views.share_zip, name="share_zip"),
]
