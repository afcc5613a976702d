"""The checks a developer runs before a commit are wired up.

.pre-commit-config.yaml has the five hooks (ruff check, ruff format, yamllint, ansible-lint,
mypy), each on the pinned tools of .venv; mypy.ini checks modules that exist, strictly; a
typed file in plugins/ never evaluates its annotations (Python 3.8 on the database hosts).
"""

import ast
import configparser
import os
import re
import shlex

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGE = "ansible_collections.dbhygiene.sessions."
# hook id -> (the tool that runs, the words its command line must hold)
HOOKS = {
    "ruff-check": ("ruff", ["check"]),
    "ruff-format": ("ruff", ["format", "--check"]),
    "yamllint": ("yamllint", []),
    "ansible-lint": ("ansible-lint", ["--profile", "production"]),
    "mypy": ("mypy", []),
}


def _read(name):
    with open(os.path.join(ROOT, name), encoding="utf-8") as handle:
        return handle.read()


def _pinned():
    """The packages requirements-test.txt pins (name -> version)."""
    pins = {}
    for line in _read("requirements-test.txt").splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)$", line.strip())
        if match:
            pins[match.group(1).lower()] = match.group(2)
    return pins


def _recipe(target):
    """The command lines of a Makefile target, as make runs them ($(VENV) and $$ resolved)."""
    lines = _read("Makefile").splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(rf"^{re.escape(target)}:", line))
    recipe = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip().replace("$(VENV)", ".venv").replace("$$", "$"))
    return recipe


def _command(entry):
    """The command line a hook's entry runs: its own, or its Makefile target's."""
    words = shlex.split(entry)
    if words[0] != "make":
        return [words]
    targets = [word for word in words[1:] if not word.startswith("-")]
    assert len(targets) == 1, entry
    return [shlex.split(line) for line in _recipe(targets[0])]


def _tool(words):
    """The .venv tool a command line runs (after any VAR=value), or None."""
    for word in words:
        if "=" in word and not word.startswith("-"):
            continue
        return word[len(".venv/bin/") :] if word.startswith(".venv/bin/") else None
    return None


def test_the_commit_hooks_are_the_five_checks_on_the_pinned_tools():
    config = yaml.safe_load(_read(".pre-commit-config.yaml"))
    (repo,) = config["repos"]
    assert repo["repo"] == "local"  # nothing to download
    hooks = {hook["id"]: hook for hook in repo["hooks"]}
    assert set(hooks) == set(HOOKS)
    pinned = _pinned()
    assert "pre-commit" in pinned
    for hook_id, (tool, words) in HOOKS.items():
        hook = hooks[hook_id]
        assert hook["language"] == "system", hook_id
        commands = [command for command in _command(hook["entry"]) if _tool(command) == tool]
        assert len(commands) == 1, (hook_id, hook["entry"])
        assert tool in pinned, f"{hook_id}: {tool} is not pinned in requirements-test.txt"
        assert all(word in commands[0] for word in words), (hook_id, commands[0], words)


def test_the_mypy_hook_and_make_test_use_the_projects_config():
    """make mypy runs mypy with mypy.ini (found in the root: no other config given), and make test runs it."""
    (command,) = _command("make mypy")
    assert command == [".venv/bin/mypy"]
    assert re.search(r"^step mypy mypy$", _read("tools/test.sh"), re.MULTILINE)


def _mypy_config():
    parser = configparser.ConfigParser()
    parser.read_string(_read("mypy.ini"))
    return parser


def test_every_module_mypy_checks_exists_and_the_check_is_strict():
    config = _mypy_config()
    options = config["mypy"]
    modules = [name.strip() for name in options["modules"].split(",") if name.strip()]
    assert len(modules) >= 10
    for name in modules:
        assert name.startswith(PACKAGE), name
        path = os.path.join(ROOT, *name[len(PACKAGE) :].split(".")) + ".py"
        assert os.path.isfile(path), f"mypy.ini lists {name}: no {os.path.relpath(path, ROOT)}"
    assert options.getboolean("strict")
    # strict's parts that make a typed file mean something are not switched off again
    for name in (
        "disallow_untyped_defs",
        "disallow_untyped_calls",
        "check_untyped_defs",
        "warn_unused_ignores",
        "warn_return_any",
    ):
        assert options.getboolean(name, fallback=True), name
    assert not options.getboolean("ignore_errors", fallback=False)
    # no module has its errors silenced in a section of its own
    assert [section for section in config.sections() if section != "mypy"] == []


def _annotated(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.AnnAssign):
            return True
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            arguments = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
            arguments += [arg for arg in (node.args.vararg, node.args.kwarg) if arg is not None]
            if node.returns is not None or any(arg.annotation is not None for arg in arguments):
                return True
    return False


def _future_names(tree):
    return {
        alias.name
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.module == "__future__"
        for alias in node.names
    }


def test_a_typed_plugin_file_never_evaluates_its_annotations():
    """`str | None` and `list[str]` in a signature fail at import on Python 3.8 unless the annotations
    stay text (PEP 563); the boilerplate line ansible-test 2.16 looks for stays as it is."""
    typed, wrong = [], []
    for folder, _dirs, files in os.walk(os.path.join(ROOT, "plugins")):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
            tree = ast.parse(text)
            if not _annotated(tree):
                continue
            typed.append(path)
            boilerplate = "\nfrom __future__ import absolute_import, division, print_function\n" in text
            if "annotations" not in _future_names(tree) or not boilerplate:
                wrong.append(os.path.relpath(path, ROOT))
    assert len(typed) >= 10
    assert wrong == []


def test_every_test_file_has_a_name_of_its_own():
    # pytest imports test files by their basename (no __init__.py in tests/): two files of one
    # name fail the whole run at collection ("import file mismatch"), the unit one and the
    # integration one alike.
    seen = {}
    for folder, _dirs, names in os.walk(os.path.join(ROOT, "tests")):
        if "output" in os.path.relpath(folder, ROOT).split(os.sep):
            continue
        for name in names:
            if name.startswith("test_") and name.endswith(".py"):
                seen.setdefault(name, []).append(os.path.relpath(os.path.join(folder, name), ROOT))
    assert len(seen) > 100
    twice = {name: paths for name, paths in seen.items() if len(paths) > 1}
    assert not twice, twice
