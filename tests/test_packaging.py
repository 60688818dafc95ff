"""pyproject.toml declares what each role needs; requirements/*.txt pin exactly the same sets (the lock).

`pip install .[worker]` must give a `deepfake` that runs, and `pip install -r requirements/engine.txt` the
tested versions of the same packages: these tests fail as soon as one side gains, loses or moves a
package without the other.
"""
from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "requirements"
# Each lock file and the pyproject extras it pins (besides the core `dependencies`, which every one pins).
LOCKS = {
    "service.txt": (),
    "web.txt": ("web",),
    "engine.txt": ("worker",),
    "serve.txt": ("serve",),
    "gpu.txt": ("gpu",),
    "dev.txt": ("dev",),
}

Key = tuple[str, frozenset[str]]  # a package with the extras asked of it: psycopg[binary] is not psycopg


def _key(requirement: Requirement) -> Key:
    return canonicalize_name(requirement.name), frozenset(requirement.extras)


def _project() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as handle:
        return tomllib.load(handle)["project"]


def declared(extras: tuple[str, ...]) -> dict[Key, Requirement]:
    """The core dependencies plus `extras`, with the project's references to its own extras followed."""
    project = _project()
    name = canonicalize_name(project["name"])
    found: dict[Key, Requirement] = {}
    pending = [Requirement(line) for line in project["dependencies"]]
    for extra in extras:
        pending += [Requirement(line) for line in project["optional-dependencies"][extra]]
    seen_extras = set(extras)
    while pending:
        requirement = pending.pop()
        if canonicalize_name(requirement.name) == name:
            for extra in requirement.extras - seen_extras:
                seen_extras.add(extra)
                pending += [Requirement(line) for line in project["optional-dependencies"][extra]]
            continue
        assert _key(requirement) not in found, f"{requirement} is declared twice"
        found[_key(requirement)] = requirement
    return found


def pinned(filename: str) -> dict[Key, Version]:
    """Every `name==version` of a lock file, following its `-r` includes."""
    pins: dict[Key, Version] = {}
    for line in (REQUIREMENTS / filename).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-r "):
            for key, version in pinned(line[3:].strip()).items():
                assert pins.setdefault(key, version) == version, f"{key[0]} pinned twice in {filename}"
            continue
        requirement = Requirement(line)
        [specifier] = list(requirement.specifier) or [None]
        assert specifier is not None and specifier.operator == "==", f"{filename}: {line!r} is not an exact pin"
        assert pins.setdefault(_key(requirement), Version(specifier.version)) == Version(specifier.version), \
            f"{requirement.name} pinned twice in {filename}"
    return pins


def _names(keys) -> list[str]:
    return sorted(name + (f"[{','.join(sorted(extras))}]" if extras else "") for name, extras in keys)


@pytest.mark.parametrize(("filename", "extras"), LOCKS.items(), ids=list(LOCKS))
def test_each_lock_pins_exactly_the_declared_set(filename: str, extras: tuple[str, ...]) -> None:
    pins, declarations = pinned(filename), declared(extras)
    assert _names(pins.keys() - declarations.keys()) == [], f"pinned in {filename}, not declared in pyproject.toml"
    assert _names(declarations.keys() - pins.keys()) == [], f"declared in pyproject.toml, not pinned in {filename}"
    outside = [f"{declarations[key]} vs =={version}" for key, version in pins.items()
               if not declarations[key].specifier.contains(version, prereleases=True)]
    assert outside == [], f"{filename} pins versions outside the declared ranges"


def test_every_lock_file_is_a_known_role() -> None:
    assert sorted(p.name for p in REQUIREMENTS.glob("*.txt")) == sorted(LOCKS)


def test_declared_ranges_are_bounded_on_both_sides() -> None:
    """`>=` the tested version and `<` the next incompatible one: an unbounded range pulls untested majors."""
    project = _project()
    lines = project["dependencies"] + [line for group in project["optional-dependencies"].values() for line in group]
    for requirement in map(Requirement, lines):
        if canonicalize_name(requirement.name) == canonicalize_name(project["name"]):
            assert not requirement.specifier, f"{requirement}: a reference to the project's own extras"
            continue
        operators = sorted(spec.operator for spec in requirement.specifier)
        assert operators == ["<", ">="], f"{requirement}: expected '>=tested,<next major'"


def test_the_web_role_stays_free_of_the_engine() -> None:
    """The web image never installs torch or OpenCV (docs/ARCHITECTURE.md)."""
    web = {name for name, _ in pinned("web.txt")}
    assert web.isdisjoint({"torch", "torchvision", "opencv-python-headless", "openvino", "nncf"})
