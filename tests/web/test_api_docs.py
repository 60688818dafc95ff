"""The API reference page (/api-docs): Swagger UI from the installed package, under the page's CSP."""
from __future__ import annotations

import pytest

from tests.conftest import wait_for
from tests.web.test_browser import browser, live_server  # noqa: F401 (fixtures)


def test_the_page_loads_swagger_ui_from_the_app_and_is_linked_from_the_header(client):
    page = client.get("/api-docs")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "/api-docs/assets/swagger-ui-bundle.js" in html and "/api/v1/openapi.json" in html
    assert "http://" not in html.split("<main", 1)[1] and "https://" not in html  # nothing from elsewhere
    assert "img-src 'self' data:" in page.headers["Content-Security-Policy"]
    assert "script-src 'self';" in page.headers["Content-Security-Policy"]  # no inline script allowed
    assert 'href="/api-docs"' in client.get("/").get_data(as_text=True)

    script = client.get("/api-docs/assets/swagger-ui-bundle.js")
    assert script.status_code == 200 and b"SwaggerUIBundle" in script.data
    assert client.get("/api-docs/assets/swagger-ui.css").status_code == 200
    for name in ("index.html", "swagger-initializer.js", "..%2F__init__.py"):
        assert client.get(f"/api-docs/assets/{name}").status_code == 404, name


@pytest.mark.browser
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_reference_lists_the_jobs_endpoints_with_no_csp_violation(live_server, browser):  # noqa: F811
    from selenium.webdriver.common.by import By

    browser.get(live_server + "/")
    browser.find_element(By.LINK_TEXT, "API").click()
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, ".opblock-tag-section .opblock"), timeout=30,
             what="Swagger UI to draw the operations")
    paths = {element.text for element in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
    assert {"/api/v1/jobs", "/api/v1/jobs/{job_id}", "/api/v1/jobs/{job_id}/cancel"} <= paths, paths
    tags = {element.text for element in browser.find_elements(By.CSS_SELECTOR, ".opblock-tag")}
    assert {"jobs", "batches", "health"} <= {tag.split("\n")[0] for tag in tags}, tags

    browser.find_element(By.CSS_SELECTOR, "#operations-jobs-api_create_job .opblock-summary").click()
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#operations-jobs-api_create_job .opblock-body"),
             timeout=10, what="the upload operation to open")
    body = browser.find_element(By.CSS_SELECTOR, "#operations-jobs-api_create_job").text
    assert "sequence_length" in body and "face_detector" in body
    browser.save_screenshot("/tmp/deepfake-api-docs.png")
    console = browser.get_log("browser")
    assert [e["message"] for e in console if "Content Security Policy" in e["message"]] == [], console
    # favicon.ico is the browser's own request, not the page's
    assert [e["message"] for e in console if e["level"] == "SEVERE" and "favicon.ico" not in e["message"]] == []
