# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The report of each kind: which builder and which Markdown renderer, chosen here only.

Private to the collection; no Ansible import. A change window's report (kind ``drain``) is
built and rendered by ``_change_window``, on the pieces of ``_report_model`` and
``_report_markdown``; every other kind (audit, enforce) by those two. The imports run one
way: this file imports the renderers, they never import it or each other back.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.dbhygiene.sessions.plugins.plugin_utils import _change_window, _report_markdown, _report_model


def builder(kind):
    """The function that builds the fleet report of `kind`, called as
    ``_report_model.build_report(kind, hosts_all, hosts_active, results, check_mode, context)``."""
    return _change_window.build_report if kind == "drain" else _report_model.build_report


def render_markdown(report):
    """The report as Markdown, by the renderer of its kind."""
    render = _change_window.render_markdown if report["kind"] == "drain" else _report_markdown.render_markdown
    return render(report)
