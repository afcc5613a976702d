"""The imports inside plugins/module_utils and plugins/plugin_utils run one way: no loop.

Every import counts, at module level and inside functions (a function-level import is how a
loop hides: it only fails, or half-initialises a module, when that function first runs). The
files of subpackages count too (``module_utils/_postgresql/driver.py`` is
``module_utils._postgresql.driver``; a package's ``__init__.py`` is the package).
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "ansible_collections.dbhygiene.sessions.plugins"
FOLDERS = ("module_utils", "plugin_utils")


def module_name(path, plugins):
    """A file's module name relative to plugins/: ``module_utils._postgresql.driver``; a package's
    ``__init__.py`` is the package (``module_utils._postgresql``)."""
    parts = list(path.relative_to(plugins).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def module_files(root=ROOT):
    """{"plugin_utils._outputs": path} for every file of the two folders and their subfolders."""
    plugins = root / "plugins"
    files = {}
    for folder in FOLDERS:
        for path in sorted((plugins / folder).rglob("*.py")):
            name = module_name(path, plugins)
            if name != folder:  # the folder's own __init__.py
                files[name] = path
    return files


def _absolute(node, package):
    """The absolute module of a `from ... import` (a relative one resolved from `package`, the
    importing file's package, dotted from plugins/); None when it cannot be resolved."""
    if node.level == 0:
        return node.module
    base = package.split(".") if package else []
    if node.level - 1 > len(base):
        return None
    base = base[: len(base) - (node.level - 1)]
    return ".".join([PACKAGE] + base + ([node.module] if node.module else []))


def imported(tree, known, package=None):
    """The modules of `known` a parsed file imports, anywhere in it (`package`: the file's own,
    dotted from plugins/, for its relative imports)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and _absolute(node, package):
            # `from pkg import _mod` imports a module; `from pkg._mod import name` imports pkg._mod.
            module = _absolute(node, package)
            names = [module] + [f"{module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name.startswith(PACKAGE + "."):
                short = name[len(PACKAGE) + 1 :]
                if short in known:
                    found.add(short)
    return found


def _package(name, path):
    """The package a module's relative imports start from (a package's __init__ is its own)."""
    return name if path.stem == "__init__" else name.rpartition(".")[0]


def import_graph(files):
    """{module: the set of modules of `files` it imports}."""
    return {
        name: imported(ast.parse(path.read_text(encoding="utf-8")), files, _package(name, path)) - {name}
        for name, path in files.items()
    }


def cycles(graph):
    """Every loop of `graph` once, as a list of modules ending where it starts (depth-first search)."""
    found, seen_loops, done = [], set(), set()

    def visit(node, stack):
        for target in sorted(graph[node]):
            if target in stack:
                loop = stack[stack.index(target) :] + [target]
                key = frozenset(loop)
                if key not in seen_loops:
                    seen_loops.add(key)
                    found.append(loop)
            elif target not in done:
                visit(target, stack + [target])
        done.add(node)

    for start in sorted(graph):
        if start not in done:
            visit(start, [start])
    return found


def test_the_graph_sees_the_files_and_their_imports():
    files = module_files()
    graph = import_graph(files)
    assert {"module_utils._policy", "plugin_utils._report_markdown"} <= set(graph)
    # A module-level `from pkg._mod import name` and a `from pkg import _mod` both count.
    assert "module_utils._errors" in graph["plugin_utils._report_model"]
    assert "module_utils._drain_request" in graph["plugin_utils._change_window"]


def _write(root, relative, text):
    path = root / "plugins" / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_a_file_in_a_subfolder_is_seen_with_its_imports_and_its_loops(tmp_path):
    package = PACKAGE + ".module_utils"
    _write(tmp_path, "module_utils/__init__.py", "")
    _write(tmp_path, "module_utils/_core.py", f"from {package}._engine.driver import connect\n")
    _write(tmp_path, "module_utils/_engine/__init__.py", "")
    _write(tmp_path, "module_utils/_engine/driver.py", f"def connect():\n    from {package} import _core\n")
    _write(tmp_path, "module_utils/_engine/statements.py", "from . import driver\nfrom .. import _core\n")
    _write(tmp_path, "plugin_utils/_report.py", f"from {package}._engine import statements\n")
    files = module_files(tmp_path)
    assert set(files) == {
        "module_utils._core",
        "module_utils._engine",
        "module_utils._engine.driver",
        "module_utils._engine.statements",
        "plugin_utils._report",
    }
    graph = import_graph(files)
    # Absolute and relative imports of a subpackage's modules, at module level and inside a function.
    # (`from . import driver` runs the package's __init__ first: it counts.)
    assert graph["module_utils._engine.statements"] == {
        "module_utils._engine",
        "module_utils._engine.driver",
        "module_utils._core",
    }
    assert graph["plugin_utils._report"] == {"module_utils._engine", "module_utils._engine.statements"}
    assert cycles(graph) == [["module_utils._core", "module_utils._engine.driver", "module_utils._core"]]


def test_a_loop_inside_a_function_is_found_and_named():
    source = {
        "a": "from ansible_collections.dbhygiene.sessions.plugins.x import b\n",
        "b": "def f():\n    from ansible_collections.dbhygiene.sessions.plugins.x.a import g\n",
        "c": "import ansible_collections.dbhygiene.sessions.plugins.x.a\n",
    }
    known = {f"x.{name}" for name in source}
    graph = {f"x.{name}": imported(ast.parse(text), known) for name, text in source.items()}
    assert cycles(graph) == [["x.a", "x.b", "x.a"]]


def test_no_import_loop_in_module_utils_and_plugin_utils():
    loops = cycles(import_graph(module_files()))
    assert not loops, "import loops: " + "; ".join(" -> ".join(loop) for loop in loops)


# ---------------------------------------------------------------- a name from its home
# Every `from <collection module> import name` names what that module defines, never a name the
# module only imports itself (a re-export): moving a name then breaks its users at once, instead
# of leaving them on an old home that still works by accident.
SOURCES = ("plugins", "extensions", "tests", "tools")
SKIPPED_PARTS = {".venv", ".venv-2.16", ".build", ".git", ".ansible", "output"}


def defined_names(tree):
    """The names a module defines (functions, classes, assigned names, anywhere in it); the
    names it only imports are not among them."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(n.id for target in targets for n in ast.walk(target) if isinstance(n, ast.Name))
    return names


def borrowed_names(files, root=ROOT):
    """`path:line: module.name` for every name imported from a collection module (of `files`)
    that does not define it; a subpackage's modules (`from pkg import driver`) are fine."""
    plugins = root / "plugins"
    found = []
    defined = {}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.ImportFrom) and node.level == 0 and node.module):
                continue
            if not node.module.startswith(PACKAGE + "."):
                continue
            source = plugins.joinpath(*node.module[len(PACKAGE) + 1 :].split("."))
            if not source.with_suffix(".py").is_file():
                continue  # a package (its modules are imported by name)
            if source not in defined:
                defined[source] = defined_names(ast.parse(source.with_suffix(".py").read_text(encoding="utf-8")))
            for alias in node.names:
                if alias.name not in defined[source]:
                    module = node.module.rsplit(".", 1)[1]
                    found.append(f"{path.relative_to(root)}:{node.lineno}: {module}.{alias.name}")
    return found


def python_files(root=ROOT):
    return [
        path
        for folder in SOURCES
        for path in sorted((root / folder).rglob("*.py"))
        if not SKIPPED_PARTS.intersection(path.relative_to(root).parts)
    ]


def test_a_name_taken_from_a_file_that_only_imports_it_is_found(tmp_path):
    package = PACKAGE + ".module_utils"
    _write(tmp_path, "module_utils/_errors.py", "class SessionError(Exception):\n    pass\n")
    _write(tmp_path, "module_utils/_driver.py", f"from {package}._errors import SessionError\nLIMIT = 3\n")
    _write(tmp_path, "module_utils/_engine/driver.py", "")
    _write(
        tmp_path,
        "plugin_utils/_user.py",
        f"from {package}._driver import LIMIT, SessionError\nfrom {package}._engine import driver\n",
    )
    files = sorted((tmp_path / "plugins").rglob("*.py"))
    assert borrowed_names(files, tmp_path) == ["plugins/plugin_utils/_user.py:1: _driver.SessionError"]


def test_every_name_is_imported_from_its_home():
    files = python_files()
    assert len(files) > 200 and ROOT / "plugins" / "module_utils" / "_errors.py" in files
    borrowed = borrowed_names(files)
    assert not borrowed, "names imported from a module that only imports them:\n" + "\n".join(borrowed)
