# -*- coding: utf-8 -*-
"""The repository stands alone: nothing in it cites a document that is not part of it."""

import os
import re
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# An outside design document, or the folder beside the clone it once lived in.
OUTSIDE = re.compile(r"\bDESIGN\.md\b|\.\./shared\b|\bshared/(?:DESIGN|STYLE|seeds)")
# A repository document cited by path in code or docs: it must exist.
CITED = re.compile(r"\b(docs/[\w./-]+\.md)\b")


def _tracked():
    out = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    return [name for name in out.stdout.splitlines() if os.path.isfile(os.path.join(ROOT, name))]


def _text(name):
    try:
        with open(os.path.join(ROOT, name), encoding="utf-8") as handle:
            return handle.read()
    except (UnicodeDecodeError, OSError):
        return ""


def test_no_file_cites_a_document_outside_the_repository():
    found = []
    for name in _tracked():
        if name == "tests/unit/test_repository.py":
            continue
        for number, line in enumerate(_text(name).splitlines(), 1):
            if OUTSIDE.search(line):
                found.append(f"{name}:{number}: {line.strip()}")
    assert not found, "cites a document that is not in the repository:\n" + "\n".join(found)


def test_every_cited_repository_document_exists():
    missing = set()
    for name in _tracked():
        for cited in CITED.findall(_text(name)):
            if not os.path.exists(os.path.join(ROOT, cited)):
                missing.add(f"{name} -> {cited}")
    assert not missing, sorted(missing)
