# Sphinx configuration of the documentation site (`make docs`, tools/docs.py).
#
# tools/docs.py assembles the source tree under .build/docs/src: README.md and docs/ as they are
# in the repository (so the relative links between them are the ones GitHub follows), and ref/,
# the collection's pages that antsibull-docs writes from the plugins' and roles' own docs. This
# file is read from docs/ (`sphinx-build -c docs`).
import os
import zlib

project = "dbhygiene.sessions"
copyright = "dbhygiene.sessions contributors"
author = "dbhygiene.sessions contributors"
root_doc = "docs/index"

extensions = ["myst_parser", "sphinx.ext.intersphinx", "sphinx_antsibull_ext"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["docs/conf.py"]

# Every cross-reference must resolve (sphinx-build -n -W): a Markdown link to a file or a heading
# that is not there fails the build. Headings up to ### get GitHub's anchors, so a link such as
# getting-started.md#least-privilege works on GitHub and here alike.
nitpicky = True
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]
suppress_warnings = []

# The collection pages refer to a few pages of the Ansible documentation by label. They resolve
# through a small inventory written here (no network: the build never fetches one), to the
# Ansible documentation's addresses; external links are not checked (see docs/index.md).
ANSIBLE_DOCS = "https://docs.ansible.com/projects/ansible/latest/"
ANSIBLE_LABELS = {
    "action_plugins": ("plugins/action.html", "Action plugins"),
    "common_return_values": ("reference_appendices/common_return_values.html", "Return Values"),
    "ansible_configuration_settings": ("reference_appendices/config.html", "Ansible Configuration Settings"),
}


def _ansible_inventory(path):
    lines = "".join(
        "%s std:label -1 %s %s\n" % (label, uri, title) for label, (uri, title) in sorted(ANSIBLE_LABELS.items())
    )
    header = "# Sphinx inventory version 2\n# Project: Ansible\n# Version: latest\n"
    header += "# The remainder of this file is compressed using zlib.\n"
    with open(path, "wb") as handle:
        handle.write(header.encode() + zlib.compress(lines.encode()))
    return path


_inventory = os.path.join(os.environ.get("DBHYGIENE_DOCS_BUILD", os.path.abspath(".build/docs")), "ansible.inv")
os.makedirs(os.path.dirname(_inventory), exist_ok=True)
intersphinx_mapping = {"ansible": (ANSIBLE_DOCS, _ansible_inventory(_inventory))}

pygments_style = "ansible"
highlight_language = "YAML+Jinja"
html_theme = "sphinx_ansible_theme"
html_title = "dbhygiene.sessions"
html_show_sphinx = False
html_use_modindex = False
html_use_index = False
html_copy_source = False
html_theme_options = {"display_version": False}


def setup(app):
    # Crontab lines (docs/guides/awx-and-cron.md) have no Pygments lexer: shown as plain text.
    from pygments.lexers.special import TextLexer
    from sphinx.highlighting import lexers

    lexers["cron"] = TextLexer()
