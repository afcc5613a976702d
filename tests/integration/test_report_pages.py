# -*- coding: utf-8 -*-
"""The HTML fleet report and the metrics file from real runs of the roles on both engines:

- two audit runs then an enforce dry run (one module-scoped set of runs for every test here);
- headless Chromium opens the pages: both hosts and their figures, a chart per trend with one
  point per kept run, no request to any network address, no console error, no page wider than
  the screen at 1280 px or on a phone, the dry-run banner on the dry run's page;
- the metrics file parses (prometheus_client's OpenMetrics parser, `promtool check metrics`) and
  its values equal the JSON reports';
- the example alert rules pass `promtool check rules` and `promtool test rules` (one test per alert).

DBHYGIENE_SCREENSHOT_DIR=docs/guides/images keeps the screenshots (docs/guides/reports.md shows them).
"""

import os
import shutil
import subprocess
import time
import types

import pytest
from _browser import DESKTOP, PHONE, Browser
from _roles_fixtures import AUDIT, ENFORCE, ROOT, close_all, new_tag, open_sessions, read_json, write_inventory
from conftest import run_playbook
from prometheus_client.openmetrics.parser import text_string_to_metric_families

HOSTS = ("pg1", "mariadb1")
RULES = os.path.join(ROOT, "extensions", "prometheus", "dbhygiene-alerts.yml")
RULE_TESTS = os.path.join(ROOT, "tests", "prometheus", "dbhygiene-alerts.test.yml")
TRENDS = ("sessions_seen", "ended_by_rule", "oldest_transaction", "longest_lock_wait", "failed_hosts")


@pytest.fixture(scope="module")
def runs(fleet, tmp_path_factory):
    """Two audits and an enforce dry run of pg1 and mariadb1, each holding an idle session the
    policy targets and a transaction left open."""
    directory = tmp_path_factory.mktemp("report-pages")
    tag = new_tag("pages")
    kinds = (("ghost", "idle"), ("stuck", "idle_in_transaction"))
    held = open_sessions(fleet, [(host, kind, f"{tag}-{name}") for host in HOSTS for name, kind in kinds])
    group_vars = {
        "dbhygiene_policy": {
            "name": "pages-" + tag,
            "rules": [{"name": "ghost", "states": ["idle"], "applications": [tag + "-ghost"], "idle_longer_than": 1}],
            "limits": {"max_fraction": "unlimited"},
        },
        "dbhygiene_report_dir": str(directory / "reports"),
        "dbhygiene_audit_log": str(directory / "audit.jsonl"),
        "dbhygiene_metrics_file": str(directory / "textfile" / "dbhygiene.prom"),
    }
    inventory = write_inventory(fleet, directory, group_vars, hosts=HOSTS)
    try:
        time.sleep(1.5)  # the ghosts are idle longer than the rule's 1s
        started = time.monotonic()
        audits = [run_playbook(AUDIT, inventory=inventory) for _run in range(2)]
        dry = run_playbook(ENFORCE, inventory=inventory, check=True)
        took = time.monotonic() - started
        print(f"three role runs: {took:.1f}s")  # the notes' figure (pytest -s)
    finally:
        close_all(held)
    for run in audits + [dry]:
        assert run.rc == 0, run.output[-4000:]
    reports = str(directory / "reports")
    return types.SimpleNamespace(
        reports=reports,
        metrics=group_vars["dbhygiene_metrics_file"],
        audit=read_json(os.path.join(reports, "audit-latest.json")),
        dry=read_json(os.path.join(reports, "enforce-check-latest.json")),
        tag=tag,
    )


@pytest.fixture(scope="module")
def browser():
    opened = Browser()
    try:
        yield opened
    finally:
        opened.close()


# Every chart: its trend, how many runs it says, and the points of each of its lines.
_CHARTS = """Array.from(document.querySelectorAll('figure.trend')).map(f => ({
  trend: f.dataset.trend, runs: Number(f.dataset.runs),
  points: Array.from(f.querySelectorAll('g.series')).map(g => g.querySelectorAll('circle.point').length),
  drawn: f.querySelector('svg').getBoundingClientRect().width}))"""
_HOSTS = """Object.fromEntries(Array.from(document.querySelectorAll('section.host')).map(s => [s.dataset.host,
  Object.fromEntries(Array.from(s.querySelectorAll('[data-figure]'))
    .map(c => [c.dataset.figure, c.textContent.trim()]))]))"""
_WIDTH = "[document.documentElement.scrollWidth, window.innerWidth]"


def _look(browser, path, device):
    since = browser.open(path, device)
    return since, {
        "charts": browser.evaluate(_CHARTS),
        "hosts": browser.evaluate(_HOSTS),
        "width": browser.evaluate(_WIDTH),
        "banner": browser.evaluate("(document.querySelector('main > .banner.dry-run') || {}).textContent || null"),
        "first": browser.evaluate("document.querySelector('main').firstElementChild.className"),
    }


def _keep_screenshot(browser, name):
    target = os.environ.get("DBHYGIENE_SCREENSHOT_DIR")
    if target:
        os.makedirs(target, exist_ok=True)
        browser.screenshot(os.path.join(target, name))


@pytest.mark.parametrize("device", [DESKTOP, PHONE], ids=["1280px", "phone"])
def test_the_audit_page_shows_the_night_at_a_glance(runs, browser, device):
    page = os.path.join(runs.reports, "audit-latest.html")
    since, seen = _look(browser, page, device)
    assert browser.requests(since) == ["file://" + page]  # nothing from any network address
    assert browser.problems(since) == []
    assert seen["banner"] is None and seen["first"] != "banner dry-run"
    assert [chart["trend"] for chart in seen["charts"]] == list(TRENDS)
    for chart in seen["charts"]:
        assert chart["runs"] == 2 and chart["points"] and set(chart["points"]) == {2}, chart
        assert chart["drawn"] >= 300  # readable: two side by side at 1280 px, one a row on a phone
    # Both hosts, with the figures the JSON report has.
    assert set(seen["hosts"]) == set(HOSTS)
    for host in HOSTS:
        entry = runs.audit["hosts"][host]
        assert entry["status"] == "ok", entry
        assert seen["hosts"][host]["seen"] == str(entry["sessions"])
        assert seen["hosts"][host]["ended"] == str(len(entry["would_end"])) == "1"
        assert seen["hosts"][host]["oldest_transaction"] != "none open"
    scroll_width, screen_width = seen["width"]
    assert scroll_width <= screen_width  # wide tables scroll in their box, the page does not
    _keep_screenshot(browser, "report-audit-%s.png" % ("phone" if device["mobile"] else "desktop"))


def test_the_dry_runs_page_says_so_at_the_top(runs, browser):
    page = os.path.join(runs.reports, "enforce-check-latest.html")
    since, seen = _look(browser, page, DESKTOP)
    assert browser.problems(since) == [] and browser.requests(since) == ["file://" + page]
    assert seen["first"] == "banner dry-run" and "Dry run (check mode)" in seen["banner"]
    assert [chart["trend"] for chart in seen["charts"]] == ["sessions_seen", "ended_by_rule", "failed_hosts"]
    assert {chart["runs"] for chart in seen["charts"]} == {1}
    assert not os.path.exists(os.path.join(runs.reports, "enforce-latest.html"))
    _keep_screenshot(browser, "report-enforce-check-desktop.png")


def _samples(text):
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def _key(name, **labels):
    return (name, frozenset(labels.items()))


def _epoch(text):
    from ansible_collections.dbhygiene.sessions.plugins.plugin_utils._metrics import epoch

    return epoch(text)


def test_the_metrics_equal_the_reports_and_promtool_reads_them(runs):
    with open(runs.metrics) as handle:
        text = handle.read()
    checked = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    found = _samples(text)
    for host in HOSTS:
        audited, dry = runs.audit["hosts"][host], runs.dry["hosts"][host]
        engine = audited["engine"]
        # The dry run came last: its figures of what it reads; the audit's of what only it reads.
        assert found[_key("dbhygiene_sessions_seen", host=host, engine=engine)] == dry["seen"]
        would = len(dry["terminated"]) + len(dry["cancelled"])
        assert found[_key("dbhygiene_sessions_would_end", host=host, engine=engine, rule="ghost")] == would == 1
        oldest = found[_key("dbhygiene_oldest_transaction_seconds", host=host)]
        assert oldest == audited["oldest_transaction"]["seconds"] > 0
        longest = (audited.get("longest_lock_wait") or {}).get("seconds") or 0
        assert found[_key("dbhygiene_longest_lock_wait_seconds", host=host)] == longest
        assert found[_key("dbhygiene_host_failed", host=host, reason="none")] == 0
        for state, count in audited["by_state"].items():
            assert found[_key("dbhygiene_sessions_by_state", host=host, engine=engine, state=state)] == count
    stamp = found[_key("dbhygiene_last_run_timestamp_seconds", role="audit", check_mode="false")]
    assert stamp == _epoch(runs.audit["time"])
    stamp = found[_key("dbhygiene_last_run_timestamp_seconds", role="enforce", check_mode="true")]
    assert stamp == _epoch(runs.dry["time"])
    assert not [key for key in found if key[0] == "dbhygiene_sessions_ended"]  # a dry run ends nothing
    assert oct(os.stat(runs.metrics).st_mode & 0o777) == "0o644"


def _promtool(*args):
    assert shutil.which("promtool"), "no promtool: apt-get install prometheus (tools/install-deps.sh installs it)"
    return subprocess.run(
        ["promtool"] + list(args), capture_output=True, text=True, cwd=os.path.dirname(RULE_TESTS), check=False
    )


def test_the_example_alert_rules_pass_promtool_with_a_test_per_alert():
    checked = _promtool("check", "rules", RULES)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = _promtool("test", "rules", RULE_TESTS)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    import yaml

    with open(RULES) as handle:
        alerts = {rule["alert"] for group in yaml.safe_load(handle)["groups"] for rule in group["rules"]}
    with open(RULE_TESTS) as handle:
        cases = yaml.safe_load(handle)["tests"]
    fired = {test["alertname"] for case in cases for test in case["alert_rule_test"] if test.get("exp_alerts")}
    quiet = {test["alertname"] for case in cases for test in case["alert_rule_test"] if not test.get("exp_alerts")}
    assert alerts == fired == quiet, "each alert has a unit test where it fires and one where it does not"
