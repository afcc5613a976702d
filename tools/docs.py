# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""`make docs`: the documentation site, built with every warning an error.

    .venv/bin/python tools/docs.py [--out DIR] [--ref-from DIR]

1. Assembles the sources under DIR/src (default .build/docs/src): README.md and docs/ linked in as
   they are in the repository, so the relative links between them are those GitHub follows, and
   ref/: the collection's pages, written by `antsibull-docs collection --use-current` from the
   plugins' and roles' own documentation (--ref-from DIR reuses the ref/ of an earlier build).
2. Runs Sphinx with docs/conf.py: `-n -W --keep-going`, so a warning, a cross-reference or a
   Markdown link (to a file or a heading) that does not resolve fails the build; HTML in DIR/html.
3. Checks that every module, plugin, role and guide has its page.

Prints the warnings and one closing line; exits 1 on any warning or missing page. DIR/build.json
holds the outcome (`warnings`, `missing`, `pages`) for tests. External links are not checked (no
network).
"""

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMESPACE, NAME = "dbhygiene", "sessions"
# plugins/ directories that hold no plugin of their own (action plugins are documented by their
# stubs in plugins/modules/).
NOT_PLUGINS = {"action", "doc_fragments", "module_utils", "plugin_utils"}


def expected_pages(root=ROOT):
    """{page path under html/: what it documents} for every module, plugin, role, guide (docs/**.md)."""
    ref = "ref/collections/%s/%s/" % (NAMESPACE, NAME)
    pages = {"README.html": "README.md"}
    for directory in sorted(glob.glob(os.path.join(root, "plugins", "*"))):
        kind = os.path.basename(directory)
        if kind in NOT_PLUGINS or not os.path.isdir(directory):
            continue
        kind = "module" if kind == "modules" else kind
        for path in sorted(glob.glob(os.path.join(directory, "*.py"))):
            name = os.path.basename(path)[:-3]
            if not name.startswith("_"):
                pages["%s%s_%s.html" % (ref, name, kind)] = os.path.relpath(path, root)
    for spec in sorted(glob.glob(os.path.join(root, "roles", "*", "meta", "argument_specs.yml"))):
        role = os.path.basename(os.path.dirname(os.path.dirname(spec)))
        pages["%s%s_role.html" % (ref, role)] = os.path.relpath(spec, root)
    for guide in sorted(
        glob.glob(os.path.join(root, "docs", "*.md")) + glob.glob(os.path.join(root, "docs", "guides", "*.md"))
    ):
        pages[os.path.relpath(guide, root)[:-3] + ".html"] = os.path.relpath(guide, root)
    return pages


def run(argv, **kwargs):
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit("docs: %s failed (exit %d)" % (os.path.basename(argv[0]), proc.returncode))
    return proc


def collection_pages(ref, env):
    """The collection's pages from its own docs, into ref/ (antsibull-docs wants it private)."""
    os.makedirs(ref, mode=0o755)
    os.chmod(ref, 0o755)
    run(
        [
            "antsibull-docs",
            "collection",
            "--use-current",
            "--cleanup",
            "everything",
            "--dest-dir",
            ref,
            NAMESPACE + "." + NAME,
        ],
        env=env,
    )


def build(out, ref_from=None, root=ROOT):
    src, html = os.path.join(out, "src"), os.path.join(out, "html")
    warnings_file = os.path.join(out, "warnings.txt")
    for path in (src, html, os.path.join(out, "doctrees")):
        shutil.rmtree(path, ignore_errors=True)
    if os.path.exists(os.path.join(out, "build.json")):  # a build that stops half-way leaves none
        os.remove(os.path.join(out, "build.json"))
    os.makedirs(src)
    # antsibull-docs runs ansible and ansible-doc: this Python's, whatever PATH holds.
    bindir = os.path.dirname(sys.executable)
    env = dict(os.environ, DBHYGIENE_DOCS_BUILD=out, PATH=bindir + os.pathsep + os.environ.get("PATH", ""))
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", os.path.join(root, ".build", "collections"))
    # README.md and docs/ as the repository has them (copies: myst resolves a link from a file's
    # real path), so a link between them resolves here exactly when it does on GitHub.
    shutil.copy2(os.path.join(root, "README.md"), os.path.join(src, "README.md"))
    shutil.copytree(
        os.path.join(root, "docs"), os.path.join(src, "docs"), ignore=shutil.ignore_patterns("conf.py", "__pycache__")
    )
    started = time.time()
    if ref_from:
        shutil.copytree(os.path.join(ref_from, "src", "ref"), os.path.join(src, "ref"))
    else:
        collection_pages(os.path.join(src, "ref"), env)
    ref_seconds = time.time() - started
    sphinx = [sys.executable, "-m", "sphinx", "-b", "html", "-E", "-q", "-n", "-W", "--keep-going"]
    sphinx += ["-c", os.path.join(root, "docs"), "-d", os.path.join(out, "doctrees"), "-w", warnings_file, src, html]
    proc = subprocess.run(sphinx, env=env, capture_output=True, text=True, check=False)
    with open(warnings_file, encoding="utf-8") as handle:
        # Named by their files in the repository, not by the copies built.
        warnings = [line.replace(src + os.sep, "") for line in handle.read().splitlines() if line.strip()]
    if proc.returncode != 0 and not warnings:  # failed without a warning: say why
        warnings = (proc.stdout + proc.stderr).strip().splitlines() or ["sphinx-build exit %d" % proc.returncode]
    pages = expected_pages(root)
    missing = sorted(
        "%s (for %s)" % (page, what) for page, what in pages.items() if not os.path.isfile(os.path.join(html, page))
    )
    with open(os.path.join(html, "index.html"), "w", encoding="utf-8") as handle:
        handle.write(
            '<!DOCTYPE html><meta charset="utf-8"><meta http-equiv="refresh" content="0; url=docs/index.html">\n'
        )
    outcome = {
        "warnings": warnings,
        "missing": missing,
        "pages": sorted(pages),
        "html": html,
        "seconds": {"reference": round(ref_seconds, 1), "sphinx": round(time.time() - started - ref_seconds, 1)},
    }
    with open(os.path.join(out, "build.json"), "w", encoding="utf-8") as handle:
        json.dump(outcome, handle, indent=1)
    return outcome


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument(
        "--out", default=os.path.join(ROOT, ".build", "docs"), help="build directory (default .build/docs)"
    )
    parser.add_argument("--ref-from", help="reuse the collection pages of the build in this directory")
    args = parser.parse_args(argv)
    outcome = build(os.path.abspath(args.out), ref_from=args.ref_from and os.path.abspath(args.ref_from))
    for line in outcome["warnings"]:
        print(line)
    for page in outcome["missing"]:
        print("missing page: " + page)
    print(
        "docs: %d pages checked, %d warnings, %d missing (antsibull-docs %ss, sphinx %ss): %s"
        % (
            len(outcome["pages"]),
            len(outcome["warnings"]),
            len(outcome["missing"]),
            outcome["seconds"]["reference"],
            outcome["seconds"]["sphinx"],
            os.path.join(outcome["html"], "index.html"),
        )
    )
    return 1 if outcome["warnings"] or outcome["missing"] else 0


if __name__ == "__main__":
    sys.exit(main())
