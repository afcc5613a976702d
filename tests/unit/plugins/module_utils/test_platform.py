# -*- coding: utf-8 -*-
"""Managed platforms, pure parts: detection rows, service sessions, the RDS kill statements,
the refusal of server-level timeouts, the drain plan of a login without superuser."""

import pytest
from ansible_collections.dbhygiene.sessions.plugins.module_utils import _platform
from ansible_collections.dbhygiene.sessions.plugins.module_utils._conditions import Protect
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql import flavours as my_flavours
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql import grants as my_grants
from ansible_collections.dbhygiene.sessions.plugins.module_utils._postgresql import timeouts as pg_timeouts
from ansible_collections.dbhygiene.sessions.plugins.module_utils._postgresql.drain import not_changed, plan_drain


@pytest.mark.parametrize(
    "row, expected",
    [
        ((True, False, False), "rds"),
        ((0, 1, 0), "cloudsql"),
        ((0, 0, 2), "azure"),
        ((1, 1, 0), "rds"),
        ((False, False, False), "self_managed"),
        (None, "self_managed"),
    ],
)
def test_detected_platform_from_the_markers(row, expected):
    assert _platform.detected(row) == expected


def test_resolve_detects_only_for_auto():
    calls = []

    def detect():
        calls.append(1)
        return "rds"

    assert _platform.resolve("auto", detect) == "rds"
    assert _platform.resolve(None, detect) == "rds"
    assert _platform.resolve("azure", detect) == "azure"
    assert len(calls) == 2
    with pytest.raises(ValueError, match="platform must be one of"):
        _platform.resolve("aws", detect)


def test_detection_statements_take_the_markers_as_parameters():
    sql, params = _platform.mysql_detect_query(True)
    assert sql.count("%s") == len(params) and "rdsadmin" in params and "mysql.user" in sql
    assert "mysql.user" not in _platform.mysql_detect_query(False)[0]
    sql, params = _platform.postgresql_detect_query()
    assert params["rds"] == ["rdsadmin"] and "rds.%%" in sql


def test_service_sessions_are_protected_whatever_protect_says():
    sessions = _platform.mark_service_sessions(
        [{"user": "rdsadmin", "superuser": True}, {"user": "app"}], "postgresql", "rds"
    )
    assert [s["service"] for s in sessions] == [True, False]
    assert Protect(superusers=False).protects(sessions[0]).startswith("service")
    assert Protect(superusers=False).protects(sessions[1]) is None
    # Not on a self-managed server: a role named rdsadmin there is nobody special.
    assert not _platform.mark_service_sessions([{"user": "rdsadmin"}], "postgresql", "self_managed")[0]["service"]


def test_rds_kill_statements_replace_kill_in_every_path():
    flavour = my_flavours.detect("10.11.6-MariaDB", "", True)
    flavour.rds_kill = True
    assert flavour.kill_query("terminate", 7) == ("CALL mysql.rds_kill(%s)", (7,))
    assert flavour.kill_query("cancel", 7) == ("CALL mysql.rds_kill_query(%s)", (7,))
    idle = {"id": 7, "user": "u", "host": "h:1", "command": "Sleep", "state": "idle", "query_id": 3, "key": "k"}
    active = dict(idle, state="active", command="Query", state_since="2026-01-01T00:00:00+00:00", key="a")
    for victims, mode in (([idle], "terminate"), ([active], "cancel"), ([active], "terminate")):
        sql, params = flavour.guard_block(victims, mode)
        assert "KILL" not in sql.replace("mysql.rds_kill", ""), sql
        assert sql.count("%s") == len(params)
    sql, params = flavour.guard_block([active], "cancel")
    assert "CALL mysql.rds_kill_query(%s);" in sql and params[-1] == 7
    assert "EXECUTE on mysql.rds_kill" in flavour.kill_rights
    assert "GRANT EXECUTE ON PROCEDURE mysql.rds_kill_query" in flavour.kill_grant("'a'@'%'")


@pytest.mark.parametrize(
    "lines, expected",
    [
        (["GRANT SELECT, EXECUTE, PROCESS ON *.* TO `admin`@`%` WITH GRANT OPTION"], 2),
        (["GRANT ALL PRIVILEGES ON `mysql`.* TO `a`@`%`"], 2),
        (["GRANT EXECUTE ON PROCEDURE `mysql`.`rds_kill` TO `a`@`%`"], 1),
        (["GRANT EXECUTE ON `appdb`.* TO `a`@`%`", "GRANT PROCESS ON *.* TO `a`@`%`"], 0),
    ],
)
def test_execute_on_the_rds_procedures_from_show_grants(lines, expected):
    names = ["mysql.rds_kill", "mysql.rds_kill_query"]
    assert len(my_grants.executable_procedures(lines, names)) == expected


def _item(grantee, grantor, grantable=False):
    return {"grantee": grantee, "grantor": grantor, "grantable": grantable, "superuser": False}


def test_a_drain_without_superuser_revokes_only_as_roles_it_may_act_as():
    info = {
        "owner": "admin",
        "items": [
            _item("admin", "admin", True),
            _item("PUBLIC", "admin"),
            _item("other", "admin", True),
            _item("app2", "other"),
        ],
    }
    changes = plan_drain("d", info, ["admin"], actable={"admin"})
    assert [(c["account"], c["grantor"]) for c in changes] == [("PUBLIC", "admin")]
    kept = not_changed("d", info, ["admin"], {"admin"}, "admin")
    assert sorted((k["account"], k["grantor"]) for k in kept) == [("app2", "other"), ("other", "admin")]
    assert "app2 can still connect to d" in [k for k in kept if k["account"] == "app2"][0]["reason"]
    # A superuser (actable None) revokes them all, dependents first.
    assert [c["account"] for c in plan_drain("d", info, ["admin"])] == ["app2", "PUBLIC", "other"]


class _Setting(object):
    def __init__(self, field, seconds):
        self.field, self.seconds, self.path = field, seconds, f"timeouts.server.{field}"


@pytest.mark.parametrize(
    "platform, place", [("rds", "parameter group"), ("cloudsql", "--database-flags"), ("azure", "az postgres")]
)
def test_server_level_timeouts_are_refused_naming_where_to_set_them(platform, place):
    settings = [_Setting("statement", 60)]
    message = _platform.server_level_refusal(platform, "postgresql", settings, lambda s: "statement_timeout")
    assert place in message and "statement_timeout" in message and "60000" in message
    assert _platform.server_level_refusal("self_managed", "postgresql", settings, lambda s: "x") is None
    assert pg_timeouts.PG_VARIABLES["statement"] == "statement_timeout"


def test_the_audit_summary_names_the_platform():
    from ansible_collections.dbhygiene.sessions.plugins.plugin_utils import _report_model

    server = {"platform": _platform.facts("postgresql", "rds", "auto")}
    summary, _breaches = _report_model.audit_summary([], server, None, {})
    assert summary["platform"] == "rds"
    assert _report_model.audit_summary([], {}, None, {})[0]["platform"] is None
