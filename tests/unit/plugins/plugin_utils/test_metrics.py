# -*- coding: utf-8 -*-
"""The metrics file (plugin_utils/_metrics.py): the report's figures as OpenMetrics text, merged
across roles, replaced atomically. Parsed with prometheus_client's OpenMetrics parser. Pure."""

import datetime
import multiprocessing
import os

import pytest
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils import _metrics, _report_kinds
from prometheus_client.openmetrics.parser import text_string_to_metric_families

CONTRACT = {
    "dbhygiene_sessions_seen": {"host", "engine"},
    "dbhygiene_sessions_ended": {"host", "engine", "rule", "action"},
    "dbhygiene_sessions_would_end": {"host", "engine", "rule"},
    "dbhygiene_oldest_transaction_seconds": {"host"},
    "dbhygiene_longest_lock_wait_seconds": {"host"},
    "dbhygiene_host_failed": {"host", "reason"},
    "dbhygiene_last_run_timestamp_seconds": {"role", "check_mode"},
}
FIRST = datetime.datetime(2026, 12, 1, 16, 0, tzinfo=datetime.timezone.utc).timestamp()


def audit_report(minute=0, hosts=("pg1", "my1"), seen=5, oldest=12.5, rule="idle"):
    results = {
        "pg1": {
            "dbhygiene": {
                "engine": "postgresql",
                "sessions": seen,
                "by_state": {"idle": seen - 1, "active": 1},
                "oldest_transaction": {"id": 7, "seconds": oldest},
                "longest_lock_wait": {"id": 8, "seconds": 3.0, "blocked_by": [7]},
                "would_end": [
                    {"id": 1, "rule": rule, "action": "terminate"},
                    {"id": 2, "rule": rule, "action": "terminate"},
                ],
            }
        },
        "my1": {"failed": True, "msg": "Access denied for user 'hygiene'", "dbhygiene": {"engine": "mysql"}},
    }
    report = _report_kinds.build_report("audit", list(hosts), list(hosts), results, False, {"run": f"a{minute}"})
    report["time"] = "2026-12-01T16:%02d:00.000000Z" % minute
    return report


def enforce_report(check_mode=False, minute=1, host="pg1"):
    ended = {
        "engine": "postgresql",
        "seen": 9,
        "terminated": [{"id": n, "rule": "idle", "action": "terminate"} for n in (1, 2)],
        "cancelled": [{"id": 3, "rule": "long", "action": "cancel"}],
    }
    report = _report_kinds.build_report(
        "enforce", [host], [host], {host: {"dbhygiene": ended}}, check_mode, {"run": "e"}
    )
    report["time"] = "2026-12-01T16:%02d:00.000000Z" % minute
    return report


def families(text):
    return {family.name: family for family in text_string_to_metric_families(text)}


def values(text):
    """{(name, frozenset(labels)): value} of the file's samples, read by prometheus_client."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def key(name, **labels):
    return (name, frozenset(labels.items()))


def test_every_family_of_the_contract_has_help_type_and_exactly_its_labels():
    text = _metrics.render(_metrics.report_samples(audit_report()) + _metrics.report_samples(enforce_report()))
    parsed = families(text)
    assert set(CONTRACT) <= set(parsed)
    for name, labels in CONTRACT.items():
        assert f"# HELP {name} " in text and f"# TYPE {name} gauge" in text
        assert parsed[name].type == "gauge" and parsed[name].documentation
        for sample in parsed[name].samples:
            assert set(sample.labels) == labels, (name, sample.labels)
    assert text.endswith("# EOF\n")


def test_the_figures_equal_the_reports():
    audit = audit_report()
    found = values(_metrics.render(_metrics.report_samples(audit)))
    pg1 = audit["hosts"]["pg1"]
    assert found[key("dbhygiene_sessions_seen", host="pg1", engine="postgresql")] == audit["totals"]["sessions_seen"]
    assert found[key("dbhygiene_oldest_transaction_seconds", host="pg1")] == pg1["oldest_transaction"]["seconds"]
    assert found[key("dbhygiene_longest_lock_wait_seconds", host="pg1")] == pg1["longest_lock_wait"]["seconds"]
    assert found[key("dbhygiene_sessions_would_end", host="pg1", engine="postgresql", rule="idle")] == 2
    assert found[key("dbhygiene_sessions_by_state", host="pg1", engine="postgresql", state="idle")] == 4
    assert found[key("dbhygiene_host_failed", host="my1", reason="login")] == 1
    assert audit["failed_host_reasons"] == {"my1": "login"}
    assert found[key("dbhygiene_host_failed", host="pg1", reason="none")] == 0
    stamp = found[key("dbhygiene_last_run_timestamp_seconds", role="audit", check_mode="false")]
    assert stamp == FIRST  # 2026-12-01T16:00:00Z
    # A failed host has no figure it could not read.
    assert not [k for k in found if dict(k[1]).get("host") == "my1" and k[0] != "dbhygiene_host_failed"]


def test_a_real_enforce_run_sets_ended_a_dry_one_would_end():
    real = values(_metrics.render(_metrics.report_samples(enforce_report())))
    assert real[key("dbhygiene_sessions_ended", host="pg1", engine="postgresql", rule="idle", action="terminate")] == 2
    assert real[key("dbhygiene_sessions_ended", host="pg1", engine="postgresql", rule="long", action="cancel")] == 1
    assert not [k for k in real if k[0] == "dbhygiene_sessions_would_end"]
    dry = values(_metrics.render(_metrics.report_samples(enforce_report(check_mode=True))))
    assert dry[key("dbhygiene_sessions_would_end", host="pg1", engine="postgresql", rule="idle")] == 2
    assert not [k for k in dry if k[0] == "dbhygiene_sessions_ended"]
    assert dry[key("dbhygiene_last_run_timestamp_seconds", role="enforce", check_mode="true")] > 0


def test_each_run_replaces_its_own_figures_and_keeps_the_others():
    text = _metrics.render(_metrics.merge([], audit_report(minute=0, rule="old_rule")))
    text = _metrics.render(_metrics.merge(_metrics.parse(text), enforce_report(minute=1)))
    # A second audit: pg1 only this time, other figures.
    text = _metrics.render(_metrics.merge(_metrics.parse(text), audit_report(minute=2, hosts=("pg1",), oldest=99.0)))
    found = values(text)
    assert found[key("dbhygiene_oldest_transaction_seconds", host="pg1")] == 99.0
    # The audit's old rule is gone (replaced for pg1), the enforce run's ended figures stay.
    assert not [k for k in found if dict(k[1]).get("rule") == "old_rule"]
    assert found[key("dbhygiene_sessions_ended", host="pg1", engine="postgresql", rule="idle", action="terminate")] == 2
    # my1 was not in the second audit: what the first said of it stays.
    assert found[key("dbhygiene_host_failed", host="my1", reason="login")] == 1
    assert {dict(k[1])["role"] for k in found if k[0] == "dbhygiene_last_run_timestamp_seconds"} == {"audit", "enforce"}
    assert found[key("dbhygiene_last_run_timestamp_seconds", role="audit", check_mode="false")] == FIRST + 120


def test_a_host_that_recovers_loses_its_failure_series():
    text = _metrics.render(_metrics.merge([], audit_report()))
    healed = enforce_report(host="my1")
    found = values(_metrics.render(_metrics.merge(_metrics.parse(text), healed)))
    assert key("dbhygiene_host_failed", host="my1", reason="login") not in found
    assert found[key("dbhygiene_host_failed", host="my1", reason="none")] == 0


@pytest.mark.parametrize("name", ['db"1', "db\\2", "db\n3", 'dé-4 {x="y"}'])
def test_label_values_round_trip_escaped(name):
    report = enforce_report(host=name)
    text = _metrics.render(_metrics.report_samples(report))
    assert families(text)["dbhygiene_sessions_seen"].samples[0].labels["host"] == name
    again = _metrics.render(_metrics.parse(text))
    assert again == text


def test_write_metrics_is_atomic_and_readable_by_node_exporter(tmp_path):
    path = str(tmp_path / "textfile" / "dbhygiene.prom")
    _metrics.write_metrics(audit_report(), path)
    assert oct(os.stat(path).st_mode & 0o777) == oct(_metrics.MODE)
    assert sorted(os.listdir(str(tmp_path / "textfile"))) == [".dbhygiene.prom.lock", "dbhygiene.prom"]
    assert values(open(path).read())[key("dbhygiene_sessions_seen", host="pg1", engine="postgresql")] == 5


def _writer(path, host, rounds):
    for minute in range(rounds):
        _metrics.write_metrics(enforce_report(host=host, minute=minute % 60), path)


def test_concurrent_writers_never_leave_half_a_file_and_lose_no_run(tmp_path):
    path = str(tmp_path / "dbhygiene.prom")
    hosts = [f"db{number}" for number in range(6)]
    writers = [multiprocessing.Process(target=_writer, args=(path, host, 15)) for host in hosts]
    for writer in writers:
        writer.start()
    reads = 0
    while any(writer.is_alive() for writer in writers) or reads == 0:
        if os.path.exists(path):
            with open(path) as handle:
                text = handle.read()
            # Whole, every time: prometheus_client refuses a file without its # EOF.
            assert text.endswith("# EOF\n")
            list(text_string_to_metric_families(text))
            reads += 1
    for writer in writers:
        writer.join()
        assert writer.exitcode == 0
    found = values(open(path).read())
    seen = {dict(k[1])["host"] for k in found if k[0] == "dbhygiene_sessions_seen"}
    assert seen == set(hosts)
    assert not [name for name in os.listdir(str(tmp_path)) if name.startswith(".dbhygiene-")]
