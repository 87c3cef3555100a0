// The queue dashboard's job and worker lists (django-rq, under admin): the admin's action checkboxes,
// started from this file because the Content-Security-Policy runs no inline script.
django.jQuery(($) => $("tr input.action-select").actions());
