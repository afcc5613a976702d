# -*- coding: utf-8 -*-
"""The HTML page of the fleet report (plugin_utils/_report_html.py): trends over the kept
reports, chart geometry, escaping, the dry-run banner, a template of the user's own. Pure."""

import os
import re

import pytest
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils import _outputs, _report_html, _report_kinds

HOSTILE = '<script>alert("x")</script><img src=http://198.51.100.7/x.png>'


def audit_report(minute=0, would=2, oldest=12.5, check_mode=False, application=HOSTILE):
    results = {
        "pg1": {
            "dbhygiene": {
                "engine": "postgresql",
                "sessions": 5 + minute,
                "by_state": {"idle": 4, "active": 1},
                "oldest_transaction": {"id": 7, "seconds": oldest},
                "longest_lock_wait": None,
                "would_end": [
                    {"id": n, "rule": "idle", "action": "terminate", "application": application} for n in range(would)
                ],
            }
        },
        "my1": {"failed": True, "msg": "cannot connect to " + HOSTILE, "dbhygiene": {"engine": "mysql"}},
    }
    report = _report_kinds.build_report(
        "audit", ["pg1", "my1"], ["pg1", "my1"], results, check_mode, {"run": f"r{minute}"}
    )
    report["time"] = "2026-12-01T16:%02d:00.000000Z" % minute
    return report


def test_trend_point_takes_the_fleets_figures():
    point = _report_html.trend_point(audit_report(minute=3, would=2, oldest=40.0))
    assert point["sessions_seen"] == 8
    assert point["ended_by_rule"] == {"idle": 2}
    assert point["oldest_transaction"] == 40.0
    assert point["longest_lock_wait"] == 0  # nobody waits
    assert point["failed_hosts"] == 1
    enforce = _report_kinds.build_report("enforce", ["a"], ["a"], {"a": {"dbhygiene": {"seen": 3}}}, False, {})
    # The enforce role does not read transactions or lock waits: not a zero, not measured.
    assert _report_html.trend_point(enforce)["oldest_transaction"] is None


@pytest.mark.parametrize(
    "value, ceiling", [(0, 1), (0.4, 1), (1, 1), (1.5, 2), (3, 5), (7, 10), (10, 10), (11, 20), (420, 500), (999, 1000)]
)
def test_the_charts_top_is_a_round_number_at_or_above_the_largest_value(value, ceiling):
    assert _report_html._nice_ceiling(value) == ceiling  # pylint: disable=protected-access


def test_a_chart_has_one_dot_per_run_inside_its_plot():
    times = ["t0", "t1", "t2", "t3"]
    chart = _report_html.chart("x", "X", "s", times, [("a", [0, 5, 10, 2.5]), ("b", [1, 1, 1, 1])])
    assert [len(series["dots"]) for series in chart["series"]] == [4, 4]
    dots = chart["series"][0]["dots"]
    assert dots[0]["x"] == chart["left"] and dots[-1]["x"] == chart["right"]
    assert dots[2]["y"] == chart["grid"][-1]["y"]  # 10 is the top
    assert dots[0]["y"] == chart["bottom"]  # 0 is the floor
    assert dots[1]["x"] < dots[2]["x"] < dots[3]["x"]
    assert "t1: a 5s" == dots[1]["label"]
    single = _report_html.chart("x", "X", "", ["t0"], [("a", [3])])
    assert single["series"][0]["dots"][0]["x"] == (single["left"] + single["right"]) / 2


def test_the_page_escapes_every_value_and_loads_nothing():
    page = _report_html.render_html(audit_report(), [_report_html.trend_point(audit_report())])
    assert HOSTILE not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
    assert not re.search(r"<script|<img|<link|@import|url\(|<[^>]*\b(?:src|href)=", page)
    assert "default-src 'none'" in page  # the browser refuses anything from elsewhere too
    assert 'data-host="pg1"' in page and 'data-host="my1"' in page
    assert 'data-reason-code="unreachable"' in page
    assert 'id="dry-run"' not in page


def test_a_dry_runs_page_says_so_at_the_top():
    report = _report_kinds.build_report("enforce", ["a"], ["a"], {"a": {"dbhygiene": {"seen": 1}}}, True, {})
    page = _report_html.render_html(report, [_report_html.trend_point(report)])
    body = page.split("<body>", 1)[1]
    assert body.lstrip().startswith('<main>\n<div class="banner dry-run" id="dry-run"')
    assert "Would end per rule" in page


def test_write_report_draws_every_trend_with_a_point_per_kept_run(tmp_path):
    report_dir = str(tmp_path)
    for minute in range(4):
        paths, _markdown = _outputs.write_report(audit_report(minute=minute, would=minute), report_dir, keep=3)
    with open(os.path.join(report_dir, "audit-latest.html")) as handle:
        page = handle.read()
    with open(paths["html"]) as handle:
        assert handle.read() == page
    charts = re.findall(r'<figure class="trend" data-trend="(\w+)" data-runs="(\d+)">(.*?)</figure>', page, re.S)
    assert [name for name, _runs, _body in charts] == [key for key, _t, _u, _k in _report_html.TRENDS]
    for _name, runs, body in charts:
        assert runs == "3"  # keep=3: the three kept reports
        for series in re.findall(r"<g class=\"series\".*?</g>", body, re.S):
            assert series.count('<circle class="point"') == 3
    # The newest three runs' sessions seen: 6, 7, 8.
    seen = re.search(r'data-trend="sessions_seen".*?</figure>', page, re.S).group(0)
    assert re.findall(r"sessions seen (\d+)</title>", seen) == ["6", "7", "8"]


def test_a_template_of_the_users_own(tmp_path):
    template = tmp_path / "mine.html.j2"
    template.write_text("<p>{{ title }}: {{ hosts | length }} hosts, {{ hosts[1].reason }}</p>\n")
    page = _report_html.render_html(audit_report(), [], str(template))
    assert page.startswith("<p>Session audit: 2 hosts, cannot connect to &lt;script&gt;")


@pytest.mark.parametrize(
    "content, problem",
    [(None, "cannot read the template"), ("{% if %}", "TemplateSyntaxError"), ("{{ 1 / 0 }}", "failed")],
)
def test_a_template_that_cannot_be_used_names_the_variable_and_the_path(tmp_path, content, problem):
    template = tmp_path / "broken.html.j2"
    if content is not None:
        template.write_text(content)
    with pytest.raises(_report_html.TemplateError) as caught:
        _report_html.render_html(audit_report(), [], str(template))
    assert str(caught.value).startswith("dbhygiene_report_html_template: ")
    assert str(template) in str(caught.value) and problem in str(caught.value)


def test_a_hosts_table_says_its_role_and_the_managed_service():
    results = {
        "db1": {"dbhygiene": {"engine": "postgresql", "sessions": 1, "role": "standby", "platform": "rds"}},
        "db2": {"dbhygiene": {"engine": "mysql", "sessions": 1, "role": "primary", "platform": "self_managed"}},
    }
    report = _report_kinds.build_report("audit", ["db1", "db2"], ["db1", "db2"], results, False, {})
    page = _report_html.render_html(report, [_report_html.trend_point(report)])
    db1, db2 = page.split('data-host="db1"', 1)[1].split('data-host="db2"', 1)
    assert '<td data-figure="role">standby</td>' in db1 and '<td data-figure="platform">rds</td>' in db1
    assert '<td data-figure="role">primary</td>' in db2 and 'data-figure="platform"' not in db2
