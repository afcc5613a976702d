"""The imports inside plugins/module_utils and plugins/plugin_utils run one way: no loop.

Every import counts, at module level and inside functions (a function-level import is how a
loop hides: it only fails, or half-initialises a module, when that function first runs).
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "ansible_collections.dbhygiene.sessions.plugins"
FOLDERS = ("module_utils", "plugin_utils")


def module_files():
    """{"plugin_utils._outputs": path} for every file of the two folders."""
    return {
        f"{folder}.{path.stem}": path
        for folder in FOLDERS
        for path in sorted((ROOT / "plugins" / folder).glob("*.py"))
        if path.stem != "__init__"
    }


def imported(tree, known):
    """The modules of `known` a parsed file imports, anywhere in it."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from pkg import _mod` imports a module; `from pkg._mod import name` imports pkg._mod.
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name.startswith(PACKAGE + "."):
                short = name[len(PACKAGE) + 1 :]
                if short in known:
                    found.add(short)
    return found


def import_graph(files):
    """{module: the set of modules of `files` it imports}."""
    return {name: imported(ast.parse(path.read_text(encoding="utf-8")), files) - {name} for name, path in files.items()}


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
    assert "module_utils._policy" in graph["plugin_utils._report_model"]
    assert "module_utils._drain" in graph["plugin_utils._change_window"]


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
