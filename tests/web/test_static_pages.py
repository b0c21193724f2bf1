"""The pages as shipped: our own script and styles, nothing from elsewhere, no HTML built from strings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

STATIC = Path(__file__).resolve().parents[2] / "reconciler" / "web" / "static"
PAGES = ("index.html", "environment.html")


@pytest.mark.parametrize("page", PAGES)
def test_a_page_loads_only_this_server_s_files_and_has_no_inline_script_or_style(page: str) -> None:
    html = (STATIC / page).read_text()
    links = re.findall(r"""(?:src|href)="([^"]*)\"""", html)
    assert "/static/app.js" in links and "/static/style.css" in links
    assert [u for u in links if not u.startswith("/") or u.startswith("//")] == []
    assert re.findall(r"<script(?![^>]*\ssrc=)[^>]*>", html) == []  # CSP forbids inline script
    assert re.findall(r"<style|\sstyle=|\son[a-z]+=", html) == []


@pytest.mark.parametrize("name", [*PAGES, "app.js", "style.css"])
def test_nothing_names_another_host(name: str) -> None:
    text = (STATIC / name).read_text()
    assert re.findall(r"(?:https?:)?//[a-z0-9-]+(?:\.[a-z0-9-]+)+", text, re.IGNORECASE) == []
    assert "@import" not in text and "url(" not in text


@pytest.mark.parametrize(
    "sink",
    [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
        "javascript:",
    ],
)
def test_the_script_never_turns_a_string_into_markup_or_code(sink: str) -> None:
    assert sink not in (STATIC / "app.js").read_text()
