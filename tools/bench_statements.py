"""Count the statements (round trips) the drivers send, from the benchmarks' side.

The drivers are left as they are: while `counting()` is active, every
connection psycopg2 or PyMySQL opens gets a cursor class whose execute()
counts, so each statement the driver sends (one execute() is one round trip,
a multi-statement block included) is counted, from the statements it runs on
connecting to the last confirm poll. Only the driver should connect inside the
block: any connection opened there is counted.

    with counting() as counter:
        driver = driver_module.open_driver(params)
        ...
    print(counter.count, counter.by_kind())
"""

import contextlib


class Counter(object):
    def __init__(self):
        self.statements = []

    @property
    def count(self):
        return len(self.statements)

    def add(self, sql):
        text = sql.decode("utf-8", "replace") if isinstance(sql, bytes) else str(sql)
        self.statements.append(" ".join(text.split())[:60])

    def mark(self):
        """The count so far, to subtract from a later one."""
        return self.count

    def by_kind(self, since=0):
        """{first word of the statement: how many} of the statements since mark `since`."""
        kinds = {}
        for text in self.statements[since:]:
            word = (text.split() or ["?"])[0].upper()
            kinds[word] = kinds.get(word, 0) + 1
        return kinds


@contextlib.contextmanager
def counting():
    """A Counter of every statement sent on the connections opened inside the block."""
    import psycopg2
    import psycopg2.extensions
    import pymysql

    counter = Counter()

    class CountingPgCursor(psycopg2.extensions.cursor):
        def execute(self, query, vars=None):  # noqa: A002 - psycopg2's own name
            counter.add(query)
            return super(CountingPgCursor, self).execute(query, vars)

    pg_connect = psycopg2.connect
    mysql_connect = pymysql.connect

    def counting_pg_connect(*args, **kwargs):
        kwargs.setdefault("cursor_factory", CountingPgCursor)
        return pg_connect(*args, **kwargs)

    def counting_mysql_connect(*args, **kwargs):
        conn = mysql_connect(*args, **kwargs)
        base = conn.cursorclass

        def execute(self, query, args=None):
            counter.add(query)
            return base.execute(self, query, args)

        conn.cursorclass = type("Counting" + base.__name__, (base,), {"execute": execute})
        return conn

    psycopg2.connect = counting_pg_connect
    pymysql.connect = counting_mysql_connect
    try:
        yield counter
    finally:
        psycopg2.connect = pg_connect
        pymysql.connect = mysql_connect
