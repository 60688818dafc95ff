"""`resolve_server`: which service URL the client commands talk to."""
from __future__ import annotations

import pytest

from cli.client import DEFAULT_SERVER, resolve_server
from cli.errors import CommandError


@pytest.mark.parametrize("raw", [None, "", "  "])
def test_no_flag_and_no_environment_is_the_local_default(raw):
    assert resolve_server(raw, environ={}) == DEFAULT_SERVER == "http://127.0.0.1:8000"


def test_no_flag_reads_deepfake_server():
    assert resolve_server(None, environ={"DEEPFAKE_SERVER": "https://deepfake.example.org/"}) == \
        "https://deepfake.example.org"


def test_the_flag_wins_over_the_environment():
    assert resolve_server("http://10.0.0.2:8000", environ={"DEEPFAKE_SERVER": "http://elsewhere"}) == \
        "http://10.0.0.2:8000"


@pytest.mark.parametrize(("raw", "url"), [
    ("127.0.0.1:8000", "http://127.0.0.1:8000"),
    ("localhost:8000", "http://localhost:8000"),
    ("localhost:8000/", "http://localhost:8000"),
    ("https://deepfake.example.org/prefix/", "https://deepfake.example.org/prefix"),
])
def test_missing_scheme_gets_http_and_the_trailing_slash_goes(raw, url):
    assert resolve_server(raw, environ={}) == url


@pytest.mark.parametrize("raw", ["ftp://127.0.0.1:8000", "file:///tmp/x", "http://"])
def test_other_schemes_and_hostless_urls_are_refused(raw):
    with pytest.raises(CommandError, match="http://"):
        resolve_server(raw, environ={})
