"""dbfleet: a throwaway fleet of real PostgreSQL and MariaDB servers on loopback.

Used by the tests, the molecule scenarios, `make demo` and the benchmarks:

    python -m dbfleet up --postgres 3 --mariadb 2
    python -m dbfleet status | inventory | down

Python API for tests: `dbfleet.state.load()` returns the running fleet,
`dbfleet.holder.open_session()` opens and holds a session of a given kind.
"""
