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
    return _report_kinds.builder(kind)(kind, ["a"], ["a"], results, False, {"run": "r1"})


@pytest.mark.parametrize(
    "kind, builder",
    [
        ("drain", _change_window.build_report),
        ("audit", _report_model.build_report),
        ("enforce", _report_model.build_report),
    ],
)
def test_each_kind_has_its_builder(kind, builder):
    assert _report_kinds.builder(kind) is builder


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
    assert markdown == _report_markdown.render_markdown(report)
    assert not markdown.startswith("# Change window")
