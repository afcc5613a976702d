# -*- coding: utf-8 -*-
"""The report of each kind is built and rendered by its own code, chosen in one place."""

import pytest
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils import (
    _change_window,
    _outputs,
    _report_kinds,
    _report_markdown,
    _report_model,
)

DRAINED = {"changed": True, "state": "drained", "databases": ["billing"], "closed": ["billing"], "changes": []}


def _built(kind):
    summary = {"engine": "postgresql", "check_mode": False}
    summary.update(_change_window.drain_summary(DRAINED) if kind == "drain" else {"seen": 1})
    results = {"a": dict(DRAINED, dbhygiene=summary) if kind == "drain" else {"dbhygiene": summary}}
    return _report_kinds.build_report(kind, ["a"], ["a"], results, False, {"run": "r1"})


@pytest.mark.parametrize(
    "kind, figures, render",
    [
        ("drain", _change_window.DrainFigures, _change_window.render_markdown),
        ("audit", _report_model.AuditFigures, _report_markdown.render_audit),
        ("enforce", _report_model.EnforceFigures, _report_markdown.render_enforce),
    ],
)
def test_each_kind_has_its_figures_and_its_renderer(kind, figures, render):
    assert _report_kinds.KINDS[kind].figures is figures
    assert _report_kinds.KINDS[kind].render_markdown is render


def test_the_kinds_are_the_report_tasks_choices_and_only_the_drain_is_one_runs():
    assert list(_report_kinds.KINDS) == ["audit", "enforce", "drain"]
    assert [name for name, kind in _report_kinds.KINDS.items() if kind.one_run] == ["drain"]
    assert _report_kinds.READ_ONLY_KINDS == ("audit",)


@pytest.mark.parametrize("kind", ["audit", "enforce", "drain"])
def test_each_report_counts_only_the_figures_of_its_kind(kind):
    totals = _built(kind)["totals"]
    assert ("sessions_seen" in totals) is (kind != "drain")
    assert ("would_end" in totals) is (kind == "audit")
    assert ("hosts_still_closed" in totals) is (kind == "drain")
    assert ("ended" in totals) is (kind != "audit")


def test_a_change_windows_report_is_rendered_as_one_wherever_it_is_rendered():
    report = _built("drain")
    assert "hosts_still_closed" in report["totals"]
    markdown = _report_kinds.render_markdown(report)
    assert markdown.startswith("# Change window\n")
    assert markdown == _change_window.render_markdown(report) == _report_kinds.render_markdown(report)
    assert _outputs.render_markdown is _report_kinds.render_markdown


@pytest.mark.parametrize("kind", ["audit", "enforce"])
def test_an_audit_or_enforce_report_is_rendered_by_the_fleet_renderer(kind):
    report = _built(kind)
    markdown = _report_kinds.render_markdown(report)
    assert markdown == (_report_markdown.render_audit if kind == "audit" else _report_markdown.render_enforce)(report)
    assert not markdown.startswith("# Change window")


@pytest.mark.parametrize("kind", ["audit", "enforce", "drain"])
def test_a_change_windows_report_names_no_policy(kind):
    report = _report_kinds.build_report(kind, ["a"], ["a"], {"a": {"dbhygiene": {}}}, False, {"policy": "nightly"})
    assert report["policy"] == (None if kind == "drain" else "nightly")
