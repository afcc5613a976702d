# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The report kinds: for each, its model (the figures its report counts) and its Markdown
renderer, chosen here only.

Private to the collection; no Ansible import. Every kind's report is built by
``_report_model.build_report`` (the hosts' statuses and failures) with the figures of its kind:
``AuditFigures`` and ``EnforceFigures`` (``_report_model``), ``DrainFigures`` (a change window's,
``_change_window``). Its Markdown is made by ``_report_markdown.render_audit`` /
``render_enforce``, or ``_change_window.render_markdown``; its HTML page by ``_report_html``
(one page for every kind). The timeouts role writes no fleet report (its trail lines only).
The imports run one way: this file imports the models and renderers, they never import it
or each other back.
"""

from __future__ import absolute_import, division, print_function

from __future__ import annotations  # isort: skip

__metaclass__ = type

from collections import OrderedDict
from typing import Any, Callable, Container, Mapping, NamedTuple, Sequence

from ansible_collections.dbhygiene.sessions.plugins.plugin_utils import _change_window, _report_markdown, _report_model


class ReportKind(NamedTuple):
    """figures: the class counting the kind's figures (a new one per report); render_markdown: its
    Markdown renderer; read_only: its runs change nothing in any mode (a dry run's report is a
    run's like any other); one_run: its report is one run's (never a sliced sweep's)."""

    figures: Callable[[], _report_model.Figures]
    render_markdown: Callable[[Mapping[str, Any]], str]
    read_only: bool
    one_run: bool


KINDS = OrderedDict(
    (
        ("audit", ReportKind(_report_model.AuditFigures, _report_markdown.render_audit, True, False)),
        ("enforce", ReportKind(_report_model.EnforceFigures, _report_markdown.render_enforce, False, False)),
        # A change window is one run over its hosts: its report is that run's.
        ("drain", ReportKind(_change_window.DrainFigures, _change_window.render_markdown, False, True)),
    )
)
READ_ONLY_KINDS = tuple(name for name, kind in KINDS.items() if kind.read_only)


def build_report(
    kind: str,
    hosts_all: Sequence[str],
    hosts_active: Container[str],
    results: Mapping[str, dict[str, Any] | None],
    check_mode: object,
    context: Mapping[str, Any],
) -> dict[str, Any]:
    """The fleet report of `kind` (a key of KINDS) from each host's registered result:
    ``_report_model.build_report`` with the figures of the kind."""
    return _report_model.build_report(
        kind, hosts_all, hosts_active, results, check_mode, context, KINDS[kind].figures()
    )


def render_markdown(report: Mapping[str, Any]) -> str:
    """The report as Markdown, by the renderer of its kind."""
    return KINDS[report["kind"]].render_markdown(report)
