"""The fast paths give what the slow ones give: YAML construction, and loads that revisit only changes."""

from __future__ import annotations

import os
from pathlib import Path

import pygit2
import pytest

from reconciler.desired import yamlio
from reconciler.desired.loader import ParseCache, load_snapshot, load_worktree
from reconciler.domain.states import Phase
from tests.desired.helpers import commit, env_yaml, make_repo, write

DOCUMENTS = [
    "a: 1\nb: [x, 'y', 1.5, true, ~, null, '', -3, +4, 0, 0.0]\nc: {d: e}\n",
    "flags: [yes, no, on, off, True, FALSE, Null, NULL]\n",
    "n: [010, 1e3, 1_000, 0x1f, 0o17, 1.]\n",
    "when: 2024-01-01\nat: 2024-01-01T10:00:00Z\n",
    "1: int key\n'1': str key\nnull: null key\nfalse: bool key\n",
    "text: |\n  line one\n  line two\nfolded: >\n  a\n  b\n",
    "base: &b {x: 1}\nderived: {<<: *b, y: 2}\n",
    "? [complex, key]\n: v\n",
    "%YAML 1.1\n---\nflag: yes\n",
    "- a\n- - b\n  - c\n",
    'quoted: "tab\\there"\nplain: a # comment\n',
    "",
    "---\n...\n",
    "just a string\n",
    "= : value\n",
]


@pytest.mark.parametrize("text", DOCUMENTS)
def test_fast_loader_constructs_what_ruamel_constructs(text: str) -> None:
    expected = yamlio._safe().load(text)
    assert yamlio.load(text) == expected
    fast = yamlio._fast_load(text)
    if fast is not yamlio._NOT_FAST:
        assert fast == expected
        assert [type(v) for v in _leaves(fast)] == [type(v) for v in _leaves(expected)]


def _leaves(value: object) -> list[object]:
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in (k, *_leaves(v))]
    if isinstance(value, list):
        return [leaf for v in value for leaf in _leaves(v)]
    return [value]


@pytest.mark.parametrize(
    "text",
    [
        "a: 1\na: 2\n",
        "a: [\n",
        "a: 1\n---\nb: 2\n",
        "a: *nothing\n",
        "a: {b: 1, b: 2}\n",
        # SPEC section 7's bounds, on the fast path and on ruamel's alike.
        "tagged: !!str 5\n",
        "binary: !!binary aGk=\n",
        "s: !!set {a, b}\n",
        "n: [.inf]\n",
        "n: [-.Inf]\n",
        "n: [.nan]\n",
        "n: 0x1fffffffffffffffff\n",
        "n: 99999999999999999999\n",
        "a: &x 1\nb: [*x, 99999999999999999999]\n",
        "a: 2024-01-01\nb: [x, y]\nc: 2024-13-45\n",
        "a: &x 1\nb: *x\nc: {d: 2024-02-30}\n",
    ],
)
def test_refusals_are_ruamels(text: str) -> None:
    issue = yamlio.load(text)
    assert isinstance(issue, yamlio.YamlIssue)


def _repo(path: Path) -> pygit2.Repository:
    return pygit2.Repository(str(path))


def test_added_and_removed_environment_files(tmp_path: Path) -> None:
    path = make_repo(tmp_path)
    repo = _repo(path)
    cache = ParseCache()
    load_snapshot(repo, cache=cache)
    commit(path, {"environments/api.yaml": env_yaml("api"), "environments/db.yaml": None})
    warm = load_snapshot(repo, cache=cache)
    assert set(warm.environments) == {"api", "web"}
    assert warm == load_snapshot(repo)
    assert list(warm.environments) == sorted(warm.environments)
    # And back again, through the same cache.
    commit(path, {"environments/api.yaml": None, "environments/db.yaml": env_yaml("db")})
    assert load_snapshot(repo, cache=cache) == load_snapshot(repo)
    assert load_snapshot(repo, "HEAD~1", cache=cache) == load_snapshot(repo, "HEAD~1")


def test_a_changed_file_keeps_its_place_in_the_sorted_environments(tmp_path: Path) -> None:
    path = make_repo(tmp_path)
    repo = _repo(path)
    cache = ParseCache()
    commit(path, {"environments/api.yaml": env_yaml("api")})
    load_snapshot(repo, cache=cache)
    commit(path, {"environments/api.yaml": env_yaml("api", state="configured")})
    warm = load_snapshot(repo, cache=cache)
    assert list(warm.environments) == sorted(warm.environments) == ["api", "db", "web"]
    assert warm == load_snapshot(repo)


def test_environments_directory_removed_and_restored(tmp_path: Path) -> None:
    path = make_repo(tmp_path)
    repo = _repo(path)
    cache = ParseCache()
    load_snapshot(repo, cache=cache)
    commit(path, {"environments/web.yaml": None, "environments/db.yaml": None})
    assert not load_snapshot(repo, cache=cache).names
    commit(path, {"environments/web.yaml": env_yaml("web")})
    assert load_snapshot(repo, cache=cache) == load_snapshot(repo)


def test_a_playbook_sibling_that_appears_changes_the_configure_hash(tmp_path: Path) -> None:
    path = make_repo(tmp_path)
    repo = _repo(path)
    cache = ParseCache()
    before = load_snapshot(repo, cache=cache)
    commit(path, {"ansible/roles/web/tasks/main.yml": "- debug: {msg: hi}\n"})
    warm = load_snapshot(repo, cache=cache)
    assert warm == load_snapshot(repo)
    web = warm.environments["web"]
    assert web.phase_hashes[Phase.CONFIGURE] != before.environments["web"].phase_hashes[Phase.CONFIGURE]
    assert web.phase_hashes[Phase.PROVISION] == before.environments["web"].phase_hashes[Phase.PROVISION]


def test_a_fixed_escaping_symlink_is_noticed(tmp_path: Path) -> None:
    path = make_repo(tmp_path)
    os.symlink("/etc", path / "infra" / "outside")
    extra = "  phases:\n    provision: [{tofu: {module: infra/outside}}]\n"
    commit(path, {"environments/web.yaml": env_yaml("web", extra=extra)})
    repo = _repo(path)
    cache = ParseCache()
    assert "web" in load_snapshot(repo, cache=cache).broken
    (path / "infra" / "outside").unlink()
    (path / "infra" / "outside").mkdir()
    commit(path, {"infra/outside/main.tf": "# inside now\n"})
    warm = load_snapshot(repo, cache=cache)
    assert "web" in warm.environments
    assert warm == load_snapshot(repo)


def test_a_blueprint_added_later_resolves_its_environments(tmp_path: Path) -> None:
    content = env_yaml("web").replace("tracker", "other")
    path = make_repo(tmp_path, {"environments/web.yaml": content})
    repo = _repo(path)
    cache = ParseCache()
    assert "web" in load_snapshot(repo, cache=cache).broken
    other = (path / "blueprints" / "tracker.yaml").read_text().replace("tracker", "other")
    commit(path, {"blueprints/other.yaml": other})
    warm = load_snapshot(repo, cache=cache)
    assert "web" in warm.environments
    assert warm == load_snapshot(repo)


def test_depends_on_problems_follow_changes(tmp_path: Path) -> None:
    path = make_repo(tmp_path)
    repo = _repo(path)
    cache = ParseCache()
    load_snapshot(repo, cache=cache)  # so that the next load revisits this one, through its indexes
    commit(path, {"environments/web.yaml": env_yaml("web", extra="  dependsOn: [db]\n")})
    warm = load_snapshot(repo, cache=cache)
    assert warm.depending == {"web"}
    assert warm == load_snapshot(repo)
    assert warm.dependents == load_snapshot(repo).dependents == {"db": frozenset({"web"})}
    commit(path, {"environments/db.yaml": env_yaml("db", extra="  dependsOn: [web]\n")})
    cycle = load_snapshot(repo, cache=cache)
    assert set(cycle.broken) == {"web", "db"}
    assert cycle == load_snapshot(repo)
    commit(path, {"environments/db.yaml": None})
    unknown = load_snapshot(repo, cache=cache)
    assert set(unknown.broken) == {"web"}
    assert unknown == load_snapshot(repo)


def test_worktree_loads_revisit_only_changed_files(tmp_path: Path) -> None:
    path = make_repo(tmp_path)
    cache = ParseCache()
    before = load_worktree(path, cache=cache)
    write(path, {"environments/web.yaml": env_yaml("web", state="destroyed"), "environments/db.yaml": None})
    warm = load_worktree(path, cache=cache)
    assert warm == load_worktree(path)
    assert set(warm.environments) == {"web"}
    write(path, {"infra/vm/main.tf": "# changed\n", "environments/db.yaml": env_yaml("db")})
    again = load_worktree(path, cache=cache)
    assert again == load_worktree(path)
    assert again.environments["db"].phase_hashes != before.environments["db"].phase_hashes
