# -*- coding: utf-8 -*-
"""`make docs`: the documentation site builds with no warning, every link inside it resolves, and
every module, plugin, role and guide has its page.

`make test` builds the site once, as its `docs` step, and points DBHYGIENE_DOCS_BUILT at it: the
test then reads that build's outcome (tools/docs.py's build.json) instead of building it again.
Run alone, it builds the site into a temporary directory. External links are not checked (no
network).
"""

import glob
import json
import os
import re
import shutil
import sys

import pytest
from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "tools"))
import docs  # noqa: E402  (tools/docs.py)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """(the build directory, its outcome)."""
    built = os.environ.get("DBHYGIENE_DOCS_BUILT")
    if built and os.path.isfile(os.path.join(built, "build.json")):
        with open(os.path.join(built, "build.json"), encoding="utf-8") as handle:
            return built, json.load(handle)
    out = str(tmp_path_factory.mktemp("docs"))
    return out, docs.build(out)


def test_the_site_builds_without_a_warning(site):
    _out, outcome = site
    assert outcome["warnings"] == [], "\n".join(outcome["warnings"])
    assert outcome["missing"] == [], outcome["missing"]


def test_every_module_plugin_role_and_guide_has_a_page(site):
    out, outcome = site
    modules = glob.glob(os.path.join(ROOT, "plugins", "modules", "*.py"))
    roles = glob.glob(os.path.join(ROOT, "roles", "*", "meta", "argument_specs.yml"))
    guides = glob.glob(os.path.join(ROOT, "docs", "guides", "*.md"))
    assert modules and roles and guides
    pages = set(outcome["pages"])
    reference = "ref/collections/dbhygiene/sessions/"
    for path in modules:
        assert reference + os.path.basename(path)[:-3] + "_module.html" in pages, path
    for path in roles:
        assert reference + path.split(os.sep)[-3] + "_role.html" in pages, path
    for path in guides:
        assert "docs/guides/" + os.path.basename(path)[:-3] + ".html" in pages, path
    for page in pages:
        assert os.path.isfile(os.path.join(out, "html", page)), page
    # The rendered module pages show no markup left literal (C(...), O(...) and the like).
    for page in glob.glob(os.path.join(out, "html", reference, "*.html")):
        with open(page, encoding="utf-8") as handle:
            text = re.sub(r"<[^>]+>", "", handle.read())
        assert not re.search(r"\b(?:C|O|V|RV|B|I|M|U|L|E|P)\([A-Za-z_]", text), page


def test_the_awx_guide_is_on_the_readmes_first_screen():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    assert len(lines) <= 300, len(lines)
    first_screen = "\n".join(lines[:60])
    assert "](docs/guides/awx-and-cron.md)" in first_screen, first_screen


def test_a_broken_link_fails_the_build(site, tmp_path):
    """A copy of README.md and docs/ with a link to a missing heading, a missing guide, and a
    missing heading of the README: each is a warning, so the build fails."""
    out, _outcome = site
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copy(os.path.join(ROOT, "README.md"), str(root / "README.md"))
    shutil.copytree(os.path.join(ROOT, "docs"), str(root / "docs"))
    with open(str(root / "docs" / "guides" / "policy.md"), "a", encoding="utf-8") as handle:
        handle.write("\n[a](lock-chains.md#no-such-heading) [b](no-such-guide.md)\n")
        handle.write("[c](../../README.md#no-such-section)\n")
    broken = docs.build(str(tmp_path / "out"), ref_from=out, root=str(root))
    found = "\n".join(broken["warnings"])
    assert "no-such-heading" in found and "no-such-guide.md" in found and "no-such-section" in found, found
    assert all("docs/guides/policy.md" in line for line in broken["warnings"]), found
