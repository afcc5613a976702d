# -*- coding: utf-8 -*-
"""The MySQL/MariaDB driver class's facts (``_mysql/driver.py``; with a server:
tests/integration/test_mysql_driver.py).
"""

from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql import driver as my_driver


def test_unsupported_conditions():
    assert my_driver.MySQLDriver.unsupported_conditions == frozenset(["connected_longer_than"])
    assert my_driver.MySQLDriver.engine == "mysql"
