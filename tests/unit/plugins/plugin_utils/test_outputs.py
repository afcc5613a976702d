# -*- coding: utf-8 -*-
"""The report files (_outputs.py): private files, AWX default-path warnings, names and pruning."""

import json
import multiprocessing
import os
import stat

from ansible_collections.dbhygiene.sessions.plugins.plugin_utils import _files, _outputs, _report_kinds


def test_write_report_files_are_private(tmp_path):
    report = _report_kinds.build_report("audit", ["a"], ["a"], {"a": {"dbhygiene": {"sessions": 2}}}, True, {})
    paths, markdown = _outputs.write_report(report, str(tmp_path / "r"))
    for path in list(paths.values()) + [str(tmp_path / "r" / "audit-latest.md")]:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert "check mode" in markdown
    assert json.load(open(paths["json"]))["totals"]["hosts"] == 1


def test_awx_default_paths_warn_and_name_the_variables():
    assert _outputs.awx_default_path_warnings({}, "~/dbhygiene/reports", "~/dbhygiene/audit.jsonl") == []
    job = {"awx_job_id": 77}
    warnings = _outputs.awx_default_path_warnings(
        job, _files.controller_path("~/dbhygiene/reports"), "~/dbhygiene/audit.jsonl"
    )
    assert len(warnings) == 2
    assert "AWX job 77" in warnings[0] and "dbhygiene_report_dir" in warnings[0]
    assert "dbhygiene_audit_log" in warnings[1] and "lost when the job ends" in warnings[1]
    assert _outputs.awx_default_path_warnings(job, "/srv/dbhygiene/reports", "/srv/dbhygiene/audit.jsonl") == []
    assert _outputs.awx_default_path_warnings({"tower_job_id": 5}, "/srv/r", None) == []


# ---------------------------------------------------------------- report names and pruning
def _write_same_report(report_dir, queue):
    report = _report_kinds.build_report("enforce", ["a"], ["a"], {"a": {"dbhygiene": {"seen": 1}}}, False, {})
    report["time"] = "2026-12-01T16:00:00.000000Z"  # the same instant for every writer
    paths, _markdown = _outputs.write_report(report, report_dir, keep=0)
    queue.put(paths["json"])


def test_concurrent_runs_never_replace_each_others_reports(tmp_path):
    report_dir = str(tmp_path / "reports")
    queue = multiprocessing.Queue()
    writers = [multiprocessing.Process(target=_write_same_report, args=(report_dir, queue)) for _writer in range(6)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    written = sorted(queue.get() for _writer in writers)
    assert len(set(written)) == 6
    stamped = sorted(n for n in os.listdir(report_dir) if "latest" not in n and not n.startswith("."))
    assert len(stamped) == 18  # .json + .md + .html of each run
    assert sorted(os.path.join(report_dir, n) for n in stamped if n.endswith(".json")) == written


def test_the_same_run_tag_twice_gets_a_new_name(tmp_path):
    report = _report_kinds.build_report("audit", ["a"], ["a"], {"a": {}}, False, {"run": "fixed"})
    first, _markdown = _outputs.write_report(report, str(tmp_path))
    second, _markdown = _outputs.write_report(report, str(tmp_path))
    assert first["json"] != second["json"] and os.path.exists(first["json"]) and os.path.exists(second["json"])


def test_report_keep_prunes_the_oldest_of_the_same_kind_only(tmp_path):
    report_dir = str(tmp_path)
    for name in ("notes.txt", "audit-20200101T000000.000000Z-x.json", "enforce-20190101T000000Z.json"):
        with open(os.path.join(report_dir, name), "w") as handle:
            handle.write("{}")
    written = []
    for minute in range(5):
        report = _report_kinds.build_report("enforce", ["a"], ["a"], {"a": {}}, False, {})
        report["time"] = "2026-12-01T16:%02d:00.000000Z" % minute
        written.append(_outputs.write_report(report, report_dir, keep=3)[0])
    names = set(os.listdir(report_dir))
    for paths in written[:2]:
        assert not {os.path.basename(path) for path in paths.values()} & names
    for paths in written[2:]:
        assert {os.path.basename(path) for path in paths.values()} <= names
    # The older-format report of the same kind is pruned too; nothing else is touched.
    assert "enforce-20190101T000000Z.json" not in names
    assert {"notes.txt", "audit-20200101T000000.000000Z-x.json", "enforce-latest.json", "enforce-latest.md"} <= names


def test_report_keep_zero_keeps_everything(tmp_path):
    for minute in range(4):
        report = _report_kinds.build_report("audit", ["a"], ["a"], {"a": {}}, False, {})
        report["time"] = "2026-12-01T16:%02d:00.000000Z" % minute
        _outputs.write_report(report, str(tmp_path), keep=0)
    assert len([n for n in os.listdir(str(tmp_path)) if n.endswith(".json") and "latest" not in n]) == 4
