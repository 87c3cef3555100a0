from django.urls import path

from jobs import views

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
]
