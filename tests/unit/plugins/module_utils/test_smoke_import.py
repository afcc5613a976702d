from ansible_collections.dbhygiene.sessions.plugins.module_utils import _driver


def test_states_are_the_five_normalized_states():
    assert _driver.STATES == ("active", "idle", "idle_in_transaction", "idle_in_transaction_aborted", "other")
