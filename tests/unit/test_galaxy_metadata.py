"""galaxy.yml carries real metadata or none: no placeholder address, author or version mismatch."""

import os

import yaml

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def _load(name):
    with open(os.path.join(ROOT, name)) as f:
        return yaml.safe_load(f)


def test_galaxy_has_no_placeholder_metadata():
    galaxy = _load("galaxy.yml")
    for key in ("repository", "homepage", "documentation", "issues"):
        value = galaxy.get(key)
        assert value is None or not any(bad in value for bad in ("example.", "invalid", "localhost", "TODO")), (
            key,
            value,
        )
    assert all(
        "placeholder" not in author.lower() and "your name" not in author.lower() for author in galaxy["authors"]
    )


def test_the_lint_skip_of_the_repository_key_goes_with_the_key():
    """The ansible-lint skip exists only while galaxy.yml has no repository (see .ansible-lint)."""
    galaxy = _load("galaxy.yml")
    skipped = "galaxy[no-repository]" in (_load(".ansible-lint").get("skip_list") or [])
    assert skipped == ("repository" not in galaxy)
