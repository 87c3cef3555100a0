"""The API describes itself: a valid OpenAPI document listing every endpoint, and docs that work offline."""

from urllib.parse import urlsplit

import pytest
from django.urls import get_resolver
from openapi_spec_validator import validate
from playwright.sync_api import expect, sync_playwright

from tests.test_browser import CHROMIUM, CHROMIUM_FLAGS, SCREENSHOTS

pytestmark = pytest.mark.database_agnostic

ENDPOINTS = {
    ("get", "/api/models"),
    ("post", "/api/jobs"),
    ("get", "/api/jobs"),
    ("get", "/api/jobs/{job_id}"),
    ("delete", "/api/jobs/{job_id}"),
    ("post", "/api/jobs/{job_id}/cancel"),
    ("post", "/api/jobs/{job_id}/retry"),
    ("get", "/api/jobs/{job_id}/stems"),
    ("get", "/api/jobs/{job_id}/stems/{stem_name}"),
    ("post", "/api/jobs/{job_id}/exports"),
    ("get", "/api/jobs/{job_id}/exports/{export_id}"),
    ("get", "/api/jobs/{job_id}/exports/{export_id}/file"),
    ("post", "/api/jobs/{job_id}/shares"),
    ("get", "/api/jobs/{job_id}/shares"),
    ("get", "/api/jobs/{job_id}/shares/{share}"),
    ("delete", "/api/jobs/{job_id}/shares/{share}"),
}


def api_routes() -> set[str]:
    """Every job route the URLconf serves under /api/, written as OpenAPI writes paths."""
    [api] = [
        entry
        for entry in get_resolver().url_patterns
        if str(entry.pattern) == "api/" and hasattr(entry, "url_patterns")
    ]
    routes = set()
    for pattern in api.url_patterns:
        route = str(pattern.pattern)
        if route.startswith(("jobs", "models")):
            for converter in ("uuidstr:", "slug:", "int:"):
                route = route.replace(f"<{converter}", "<")
            routes.add("/api/" + route.replace("<", "{").replace(">", "}"))
    return routes


@pytest.mark.django_db
def test_openapi_document_is_valid_and_lists_every_endpoint(client):
    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    document = response.json()
    validate(document)
    listed = {(method, path) for path, item in document["paths"].items() for method in item}
    assert listed == ENDPOINTS
    assert {path for _, path in listed} == api_routes(), "every routed endpoint is described"
    schemes = document["components"]["securitySchemes"]
    assert {"type": "http", "scheme": "bearer"}.items() <= schemes["TokenAuth"].items()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert "401" in operation["responses"], f"{method} {path} documents its 401"
            assert operation["security"], f"{method} {path} needs auth"


@pytest.mark.django_db
def test_docs_page_loads_nothing_from_other_hosts(client):
    page = client.get("/api/docs").content.decode()
    assert "cdn" not in page.lower()
    assert "/static/ninja/swagger-ui-bundle.js" in page


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_docs_page_renders_offline_in_chromium(live_web):
    site_host = urlsplit(live_web).netloc
    elsewhere = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1200, "height": 1400})

        def only_the_site(route):
            if urlsplit(route.request.url).netloc == site_host:
                return route.continue_()
            elsewhere.append(route.request.url)
            return route.abort()

        page.route("**/*", only_the_site)
        page.goto(f"{live_web}/api/docs")
        expect(page.locator(".swagger-ui .info .title")).to_contain_text("stemsite API")
        expect(
            page.locator(".opblock-summary-path", has_text="/api/jobs/{job_id}/exports/{export_id}")
        ).to_have_count(2)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "api-docs.png"), full_page=False)
        browser.close()
    assert elsewhere == [], "the docs page asked another host for something"
