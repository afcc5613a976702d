"""The action plugins use only names their helper modules define.

They import the modules of plugin_utils and module_utils and call ``_module.name`` when they run:
a name a module lost would only fail then. Each such use is checked here against the module.
"""

import ast
import importlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "ansible_collections.dbhygiene.sessions.plugins"


def module_attributes(path):
    """{(module, name)} for every ``_module.name`` a file uses, where it imports ``_module``
    with ``from <PACKAGE>.<folder> import _module``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    modules = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in (f"{PACKAGE}.plugin_utils", f"{PACKAGE}.module_utils"):
            for alias in node.names:
                modules[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return {
        (modules[node.value.id], node.attr)
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules
    }


def test_every_name_the_action_plugins_use_is_defined():
    used = set()
    for path in sorted((ROOT / "plugins" / "action").glob("*.py")):
        used |= module_attributes(path)
    assert ("ansible_collections.dbhygiene.sessions.plugins.plugin_utils._report_model", "failure_reason") in used
    missing = sorted(f"{module}.{name}" for module, name in used if not hasattr(importlib.import_module(module), name))
    assert missing == []
