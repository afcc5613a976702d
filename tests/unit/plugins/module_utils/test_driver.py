"""The normalized session record of plugins/module_utils/_driver.py, the one every engine driver returns."""

from ansible_collections.dbhygiene.sessions.plugins.module_utils import _driver


def test_states_are_the_five_normalized_states():
    assert _driver.STATES == ("active", "idle", "idle_in_transaction", "idle_in_transaction_aborted", "other")


def test_session_fields_hold_the_normalized_record_of_the_design():
    design = [
        "id",
        "key",
        "user",
        "database",
        "application",
        "client_addr",
        "state",
        "connected_at",
        "state_since",
        "idle_seconds",
        "query_seconds",
        "transaction_seconds",
        "query",
        "backend_type",
        "command",
    ]
    assert set(design) <= set(_driver.SESSION_FIELDS)
    assert len(set(_driver.SESSION_FIELDS)) == len(_driver.SESSION_FIELDS)
