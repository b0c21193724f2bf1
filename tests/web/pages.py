"""What a person sees on the dashboard, read from the page as they would read it."""

from __future__ import annotations

from typing import Any


def rows(driver: Any) -> list[str]:
    """The environment names in the fleet table, top to bottom."""
    found = driver.execute_script(
        "return [...document.querySelectorAll('#fleet-rows tr[data-name]')].map(tr => tr.dataset.name)"
    )
    return [str(n) for n in found]


def cell(driver: Any, name: str, column: str) -> str:
    """The text of one cell of ``name``'s row (columns: observed, desired, converged, drift, ...)."""
    found = driver.execute_script(
        'const tr = document.querySelector(`#fleet-rows tr[data-name="${CSS.escape(arguments[0])}"]`);'
        "const td = tr && tr.querySelector('td.' + arguments[1]);"
        "return td ? td.textContent : null;",
        name,
        column,
    )
    return "" if found is None else str(found)


def count(driver: Any, state: str) -> int:
    found = driver.execute_script(
        'const e = document.querySelector(`#counts [data-count="${CSS.escape(arguments[0])}"]`);'
        "return e ? e.textContent : null;",
        state,
    )
    return 0 if found is None else int(found)


def phases(driver: Any) -> dict[str, list[str]]:
    """The environment page's phases table: phase -> [hash, completed]."""
    found = driver.execute_script(
        "return [...document.querySelectorAll('#phases tr[data-phase]')]"
        ".map(tr => [tr.dataset.phase, ...[...tr.cells].slice(1).map(c => c.textContent)])"
    )
    return {str(row[0]): [str(c) for c in row[1:]] for row in found}


def keep_watch(driver: Any, name: str) -> None:
    """Mark this document (a reload would lose the mark) and record every state ``name``'s row shows."""
    driver.execute_script(
        """
        window.__sameDocument = true;
        window.__seen = [];
        const tbody = document.getElementById('fleet-rows');
        const note = () => {
          const tr = tbody.querySelector(`tr[data-name="${CSS.escape(arguments[0])}"]`);
          const text = tr ? tr.querySelector('td.observed').textContent : null;
          if (text !== null && window.__seen[window.__seen.length - 1] !== text) window.__seen.push(text);
        };
        new MutationObserver(note).observe(tbody, {childList: true, subtree: true});
        note();
        """,
        name,
    )


def seen(driver: Any) -> list[str]:
    return list(driver.execute_script("return window.__seen || []"))


def same_document(driver: Any) -> bool:
    return bool(driver.execute_script("return window.__sameDocument === true"))


def loads(driver: Any) -> int:
    """How many times the page has rendered data from the API (``data-loaded``)."""
    return int(driver.execute_script("return Number(document.body.dataset.loaded || 0)"))


def foreign_requests(driver: Any, origin: str) -> list[str]:
    """Every resource the page loaded from anywhere but ``origin`` (no CDN, no fonts, nothing)."""
    names = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    return [str(n) for n in names if not str(n).startswith(origin + "/")]


def script_errors(driver: Any) -> list[str]:
    """What the page's console reported as errors since the last call (a failing script, a 404)."""
    return [str(e["message"]) for e in driver.get_log("browser") if e["level"] == "SEVERE"]
