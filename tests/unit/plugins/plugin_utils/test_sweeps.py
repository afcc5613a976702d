# -*- coding: utf-8 -*-
"""Sliced sweeps: which sweep a run is part of, and the sweep's report merged from every run's hosts."""

import json
import multiprocessing
import os
import stat

import pytest
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils import _outputs, _report_kinds, _sweeps

# The extra variables AWX gives a job of a sliced job template (UnifiedJob.awx_meta_vars).
AWX_SLICE = {
    "awx_job_id": 102,
    "tower_job_id": 102,
    "awx_job_launch_type": "workflow",
    "awx_workflow_job_id": 100,
    "tower_workflow_job_id": 100,
    "awx_workflow_job_name": "nightly enforce",
    "awx_job_template_name": "nightly enforce",
}


@pytest.mark.parametrize(
    "task_vars, expected",
    [
        ({}, None),
        ({"dbhygiene_sweep_id": ""}, None),
        ({"dbhygiene_sweep_id": "  "}, None),
        ({"dbhygiene_sweep_id": "nightly-2026-12-01"}, {"id": "nightly-2026-12-01", "source": "dbhygiene_sweep_id"}),
        ({"dbhygiene_sweep_id": 42}, {"id": "42", "source": "dbhygiene_sweep_id"}),
        # An AWX job of its own is its own sweep: a report per job, as without a sweep.
        ({"awx_job_id": 7}, None),
        ({"tower_job_id": 7}, None),
        (AWX_SLICE, {"id": "awx-workflow-100", "source": "awx_workflow_job_id"}),
        ({"tower_workflow_job_id": 9, "tower_job_id": 10}, {"id": "awx-workflow-9", "source": "tower_workflow_job_id"}),
        ({"awx_workflow_job_id": "", "awx_job_id": 3, "dbhygiene_sweep_id": "x"}, None),
    ],
)
def test_the_sweep_of_a_run(task_vars, expected):
    assert _sweeps.sweep_of(task_vars)[0] == expected


def test_a_sweep_id_that_awx_overrides_is_named_in_a_warning():
    sweep, warnings = _sweeps.sweep_of(dict(AWX_SLICE, dbhygiene_sweep_id="mine"))
    assert sweep["id"] == "awx-workflow-100"
    assert warnings == [
        "dbhygiene_sweep_id 'mine' is not used: this run is part of the sweep of AWX workflow job 100, "
        "which AWX identifies"
    ]
    assert "AWX job 7" in _sweeps.sweep_of({"awx_job_id": 7, "dbhygiene_sweep_id": "mine"})[1][0]
    assert _sweeps.sweep_of({"dbhygiene_sweep_id": "mine"})[1] == []


def test_a_bad_sweep_id_or_slice_count_names_the_variable_and_the_value():
    with pytest.raises(_sweeps.SweepError, match=r"dbhygiene_sweep_id: expected a string, got list \['a'\]"):
        _sweeps.sweep_of({"dbhygiene_sweep_id": ["a"]})
    for bad in (0, -1, "two", True, 1.5):
        with pytest.raises(_sweeps.SweepError, match=r"dbhygiene_sweep_slices: expected a whole number >= 1"):
            _sweeps.sweep_slices({"dbhygiene_sweep_slices": bad})
    assert _sweeps.sweep_slices({}) is None
    assert _sweeps.sweep_slices({"dbhygiene_sweep_slices": "3"}) == 3


def test_sweep_tags_are_file_names_and_tell_sweeps_and_dry_runs_apart():
    plain = _sweeps.sweep_tag({"id": "nightly-1"}, False)
    assert plain.startswith("sweep.nightly_1.") and plain != _sweeps.sweep_tag({"id": "nightly_1"}, False)
    assert _sweeps.sweep_tag({"id": "n.1"}, False) == "sweep.n.1"
    assert _sweeps.sweep_tag({"id": "n.1"}, True) == "sweep_check.n.1"
    assert "/" not in _sweeps.sweep_tag({"id": "../../etc"}, False)
    assert len(_sweeps.sweep_tag({"id": "x" * 500}, False)) < 100
    # The report's name is one that write_report and prune_reports recognise.
    name = f"enforce-20261201T160000.000000Z-{_sweeps.sweep_tag({'id': 'a b/c'}, True)}.json"
    assert _outputs._STAMPED_RE.match(name)


def test_only_what_the_report_uses_of_a_result_is_kept():
    result = {
        "failed": True,
        "msg": "limit",
        "dbhygiene": {"seen": 3},
        "terminated": [{"query": "ALTER USER x PASSWORD 'secret'"}],
        "invocation": {"module_args": {"login_password": "secret"}},
    }
    assert _sweeps.reportable(result) == {"failed": True, "msg": "limit", "dbhygiene": {"seen": 3}}
    assert _sweeps.reportable(None) is None


def _result(host, seen, terminated=(), policy="nightly"):
    return {
        "changed": bool(terminated),
        "dbhygiene": {
            "engine": "postgresql",
            "policy": policy,
            "seen": seen,
            "terminated": [{"id": n, "key": f"{host}-{n}"} for n in terminated],
            "cancelled": [],
            "not_ended": [],
        },
    }


def _write_run(report_dir, hosts, run, results, sweep_id="s1", now="2026-12-01T16:00:00.000000Z", **options):
    return _sweeps.write_sweep_report(
        "enforce",
        report_dir,
        {"id": sweep_id, "source": "dbhygiene_sweep_id"},
        run,
        options.pop("check_mode", False),
        hosts,
        options.pop("active", hosts),
        results,
        {
            "job_id": options.pop("job_id", None),
            "audit_log": "/trail.jsonl",
            "expected_hosts": options.pop("expected", None),
        },
        slices=options.pop("slices", None),
        keep=options.pop("keep", 30),
        now=now,
    )


def test_the_report_of_a_sweep_covers_every_host_of_every_run(tmp_path):
    report_dir = str(tmp_path / "reports")
    _write_run(report_dir, ["db1", "db2"], "r1", {"db1": _result("db1", 3, [1]), "db2": _result("db2", 2)}, slices=3)
    report, paths, markdown = _write_run(
        report_dir,
        ["db3", "db4"],
        "r2",
        {"db3": _result("db3", 5, [7, 8]), "db4": None},
        active=["db3"],
        now="2026-12-01T16:00:01.000000Z",
        slices=3,
    )
    assert sorted(report["hosts"]) == ["db1", "db2", "db3", "db4"]
    assert report["totals"] == dict(report["totals"], hosts=4, ok=3, failed=1, terminated=3, ended=3, sessions_seen=10)
    assert report["failed_host_reasons"] == {"db4": "no_result"}
    assert report["run"] == "sweep.s1" and report["policy"] == "nightly" and report["audit_log"] == "/trail.jsonl"
    assert report["sweep"] == {
        "id": "s1",
        "source": "dbhygiene_sweep_id",
        "slices": 3,
        "runs": [
            {"run": "r1", "time": "2026-12-01T16:00:00.000000Z", "job_id": None, "hosts": ["db1", "db2"]},
            {"run": "r2", "time": "2026-12-01T16:00:01.000000Z", "job_id": None, "hosts": ["db3", "db4"]},
        ],
        "runs_missing": 1,
        "complete": False,
        "hosts": 4,
        "hosts_missing": None,  # no run knew the sweep's hosts
    }
    assert "## Sweep" in markdown and "2 runs of 3 (1 still to report), 4 hosts." in markdown
    # One report of the sweep (the first run's is replaced), plus the -latest ones and the sweep's directory.
    names = sorted(os.listdir(report_dir))
    assert names == sorted(
        [os.path.basename(path) for path in paths.values()]
        + ["enforce-latest.json", "enforce-latest.md", "enforce-latest.html", "enforce-sweep.s1.d"]
    )
    with open(os.path.join(report_dir, "enforce-latest.json")) as handle:
        assert json.load(handle)["sweep"]["runs_missing"] == 1
    for root, _dirs, files in os.walk(os.path.join(report_dir, "enforce-sweep.s1.d")):
        for name in files:
            assert stat.S_IMODE(os.stat(os.path.join(root, name)).st_mode) == 0o600

    report = _write_run(report_dir, ["db5"], "r3", {"db5": _result("db5", 1)}, slices=3, now="2026-12-01T16:00:02Z")[0]
    assert report["sweep"]["complete"] is True and report["sweep"]["runs_missing"] == 0
    assert report["totals"]["hosts"] == 5


def test_a_host_run_again_in_the_sweep_shows_its_latest_result(tmp_path):
    report_dir = str(tmp_path)
    _write_run(report_dir, ["db1", "db2"], "r1", {"db1": {"failed": True, "msg": "boom"}, "db2": _result("db2", 1)})
    report = _write_run(report_dir, ["db1"], "r2", {"db1": _result("db1", 4, [2])}, now="2026-12-01T16:05:00Z")[0]
    assert report["hosts"]["db1"]["status"] == "ok" and report["totals"]["terminated"] == 1
    assert report["totals"]["hosts"] == 2 and len(report["sweep"]["runs"]) == 2


def test_the_hosts_the_runs_expect_and_no_run_reported_are_missing(tmp_path):
    every = ["db1", "db2", "db3"]
    report, _paths, markdown = _write_run(str(tmp_path), ["db2"], "r1", {"db2": _result("db2", 1)}, expected=every)
    assert report["sweep"]["hosts_missing"] == ["db1", "db3"] and "Still to report: db1, db3." in markdown
    report = _write_run(str(tmp_path), ["db1", "db3"], "r2", {"db1": None, "db3": None}, expected=None)[0]
    assert report["sweep"]["hosts_missing"] == [] and report["totals"]["hosts"] == 3


def test_hosts_missing_is_unknown_when_no_run_knew_the_sweeps_hosts(tmp_path):
    """AWX slices: each run's inventory is its own slice, so nobody can say which hosts are missing."""
    report, _paths, markdown = _write_run(str(tmp_path), ["db2"], "r1", {"db2": _result("db2", 1)}, expected=None)
    assert report["sweep"]["hosts_missing"] is None
    assert "Still to report" not in markdown and "hosts of the other runs are not known" in markdown


def test_a_host_run_twice_keeps_both_runs_kills_once_each(tmp_path):
    report_dir = str(tmp_path)
    _write_run(report_dir, ["db1", "db2"], "r1", {"db1": _result("db1", 5, [1, 2]), "db2": _result("db2", 1, [9])})
    # The same slice again: db1 ends two more (and reports one of the first run's again), db2 none.
    again = {"db1": _result("db1", 3, [2, 3, 4]), "db2": _result("db2", 1)}
    report = _write_run(report_dir, ["db1", "db2"], "r2", again, now="2026-12-01T16:05:00Z")[0]
    assert report["totals"]["terminated"] == 5 and report["totals"]["ended"] == 5
    assert [e["id"] for e in report["hosts"]["db1"]["terminated"]] == [1, 2, 3, 4]
    assert report["hosts"]["db1"]["seen"] == 3  # the rest is the latest run's
    assert [e["id"] for e in report["hosts"]["db2"]["terminated"]] == [9]
    # A later run that failed on the host keeps the kills made before.
    report = _write_run(report_dir, ["db1"], "r3", {"db1": {"failed": True, "msg": "boom"}}, now="2026-12-01T16:06Z")[0]
    assert report["hosts"]["db1"]["status"] == "failed" and report["totals"]["terminated"] == 5


def test_merge_keeps_the_latest_file_of_a_host():
    files = [
        {"host": "a", "time": "2026-12-01T16:00:01Z", "active": True, "result": _result("a", 1, policy="p2")},
        {"host": "a", "time": "2026-12-01T16:00:00Z", "active": False, "result": None},
        {"host": "b", "time": "2026-12-01T16:00:00Z", "active": False, "result": None},
        {"time": "2026-12-01T16:00:00Z"},
    ]
    hosts, active, results, policies = _sweeps.merge_hosts(files)
    assert hosts == ["a", "b"] and active == ["a"] and results["b"] is None and policies == {"p2"}


def test_a_dry_run_and_a_real_run_of_one_sweep_id_are_two_sweeps(tmp_path):
    report_dir = str(tmp_path)
    dry = _write_run(report_dir, ["db1"], "r1", {"db1": _result("db1", 1, [1])}, check_mode=True)[0]
    real = _write_run(report_dir, ["db2"], "r2", {"db2": _result("db2", 1)}, now="2026-12-01T16:00:01Z")[0]
    assert dry["check_mode"] is True and list(dry["hosts"]) == ["db1"]
    assert real["check_mode"] is False and list(real["hosts"]) == ["db2"]
    assert {"enforce-sweep_check.s1.d", "enforce-sweep.s1.d"} <= set(os.listdir(report_dir))


def test_pruning_a_sweeps_report_removes_its_directory_unless_a_run_holds_it(tmp_path):
    report_dir = str(tmp_path)
    for number in range(3):
        report = _write_run(report_dir, ["db1"], f"r{number}", {"db1": _result("db1", 1)}, sweep_id=f"s{number}")[0]
    assert sorted(n for n in os.listdir(report_dir) if n.endswith(".d")) == [
        "enforce-sweep.s0.d",
        "enforce-sweep.s1.d",
        "enforce-sweep.s2.d",
    ]
    held = os.path.join(report_dir, "enforce-sweep.s0.d")
    with _fleet_lock(held):
        report = _report_kinds.build_report("enforce", ["x"], ["x"], {"x": {}}, False, {})
        _outputs.write_report(report, report_dir, keep=2)
    # s0 (the oldest) is held by a run of its own: kept; s1 goes with its report.
    names = os.listdir(report_dir)
    assert "enforce-sweep.s0.d" in names and "enforce-sweep.s1.d" not in names and "enforce-sweep.s2.d" in names
    assert not [n for n in names if "-sweep.s1" in n]
    _outputs.write_report(report, report_dir, keep=2)
    assert "enforce-sweep.s0.d" not in os.listdir(report_dir)
    assert report["run"] is None  # the plain report's names are as before


def _fleet_lock(path):
    from ansible_collections.dbhygiene.sessions.plugins.plugin_utils._files import locked_directory

    return locked_directory(path)


def _one_run(report_dir, number, queue):
    hosts = [f"db{number}-{n}" for n in range(4)]
    results = {host: _result(host, 1, [number]) for host in hosts}
    report = _write_run(report_dir, hosts, f"r{number}", results, now=f"2026-12-01T16:00:0{number}Z", slices=6)[0]
    queue.put(len(report["hosts"]))


def test_concurrent_runs_of_a_sweep_leave_the_report_of_all_their_hosts(tmp_path):
    report_dir = str(tmp_path / "reports")
    queue = multiprocessing.Queue()
    runs = [multiprocessing.Process(target=_one_run, args=(report_dir, number, queue)) for number in range(6)]
    for run in runs:
        run.start()
    for run in runs:
        run.join()
    seen = sorted(queue.get() for _run in runs)
    assert seen[-1] == 24  # the last run to write saw every host
    assert len(set(seen)) == 6  # each run saw the hosts of the runs before it, never a torn file
    with open(os.path.join(report_dir, "enforce-latest.json")) as handle:
        latest = json.load(handle)
    assert latest["totals"]["hosts"] == 24 and latest["sweep"]["complete"] is True
    assert len([n for n in os.listdir(report_dir) if n.endswith(".json") and "latest" not in n]) == 1
