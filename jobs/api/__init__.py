"""The JSON API at /api/ (the NinjaAPI instance is jobs.api.api.api)."""
