# -*- coding: utf-8 -*-
"""The Markdown reports show every value as text: a hostile application name, user, database,
message or path renders as itself, never as markup (HTML, links, code, emphasis, a table cell
of its own, a line of its own). Rendered with markdown-it (CommonMark + GFM tables, the
pinned test dependency) where it is installed; the escaped text is checked everywhere."""

import html.parser

import pytest
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils import _change_window, _report_kinds, _report_model
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils._report_markdown import text

HOSTILE = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "<javascript:alert(1)>",
    "[x](javascript:alert(1))",
    "![i](http://e.test/x.png)",
    "[ref]: http://e.test",
    "`code` and ``more``",
    "a | b || c",
    "line\nbreak\r\n# heading\n- item\n| x | y |",
    "*em* _em_ __strong__ ~~del~~ ~sub~",
    "&lt;script&gt; &#60;b&#62; &amp;",
    "back\\slash\\| \\*",
    "$x^2$ and $$y$$",
    "<!-- open comment",
    "snake_case_name and _edge_ and trailing_",
]


@pytest.mark.parametrize(
    "value, shown",
    [
        ("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
        ("[x](javascript:alert(1))", "\\[x\\](javascript:alert(1))"),
        ("a|b\nc\r\n", "a\\|b c  "),
        ("`x`", "\\`x\\`"),
        ("&amp;", "&amp;amp;"),
        ("idle_in_transaction", "idle_in_transaction"),
        ("_x_ y_", "\\_x\\_ y\\_"),
        ("10.0.0.5", "10.0.0.5"),
        (None, ""),
        (42, "42"),
    ],
)
def test_text_escapes_markup_and_keeps_plain_values(value, shown):
    assert text(value) == shown


class _Html(html.parser.HTMLParser):
    """The tags of a rendered report and the text of each table row's cells."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags, self.rows, self._cell = set(), [], None

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


# What the reports themselves use: headings, paragraphs with bold, lists and tables.
_OWN_TAGS = {"h1", "h2", "p", "strong", "ul", "li", "table", "thead", "tbody", "tr", "th", "td"}


def _rendered(markdown):
    markdown_it = pytest.importorskip("markdown_it")
    renderer = markdown_it.MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
    parsed = _Html()
    parsed.feed(renderer.render(markdown))
    return parsed


def _plain(value):
    return " ".join(value.split())


def _session(number, value):
    return {
        "id": number,
        "key": f"{number}@t0",
        "user": value,
        "database": value,
        "application": value,
        "client_addr": "10.0.0.5",
        "state": "idle",
        "idle_seconds": 100.0,
        "query": "SELECT 1",
        "rule": "ghost",
        "action": "terminate",
    }


def _enforce_report(check_mode=False):
    results = {}
    for number, value in enumerate(HOSTILE):
        summary = _report_model.enforce_summary(
            {"policy": {"name": "p"}, "summary": {"seen": 1}, "terminated": [_session(number, value)]}
        )
        results[f"db{number}"] = {"dbhygiene": dict(summary, engine="postgresql")}
    results["bad"] = {"failed": True, "msg": "cannot connect: " + " ".join(HOSTILE), "dbhygiene": {"engine": "mysql"}}
    context = {"policy": HOSTILE[0], "audit_log": "/tmp/a_b_/[x](y)", "job_id": "<b>7</b>"}
    return _report_kinds.build_report("enforce", sorted(results), sorted(results), results, check_mode, context)


def _check(markdown, rows_of_values):
    """No tag a value could make; every row shows its values as they are."""
    parsed = _rendered(markdown)
    assert parsed.tags <= _OWN_TAGS, parsed.tags - _OWN_TAGS
    shown = {tuple(row) for row in parsed.rows}
    for values in rows_of_values:
        assert tuple(_plain(str(value)) for value in values) in shown, (values, sorted(shown)[:3])
    return parsed


def test_the_enforce_report_shows_hostile_values_as_text():
    report = _enforce_report()
    markdown = _report_kinds.render_markdown(report)
    rows = [(f"db{n}", n, v, v, v, "10.0.0.5", "idle", "1m40s", "ghost", "terminate") for n, v in enumerate(HOSTILE)]
    parsed = _check(markdown, rows)
    widths = {len(row) for row in parsed.rows}
    assert widths == {10, 7}  # the sessions' table and the hosts' table: no cell split by a value
    failed = [line for line in markdown.splitlines() if line.startswith("- **bad**")]
    assert len(failed) == 1  # the message is one list item, whatever line breaks it holds
    for line in ("- policy: &lt;script&gt;", "- audit trail: /tmp/a_b\\_/\\[x\\](y)", "- AWX job: &lt;b&gt;7"):
        assert line in markdown


def test_the_audit_report_and_its_lock_chains_show_hostile_values_as_text():
    results = {}
    for number, value in enumerate(HOSTILE):
        session = _session(number, value)
        summary, _breaches = _report_model.audit_summary([session], {}, None, {}, None)
        summary["would_end"] = [_report_model.brief(session)]
        results[f"db{number}"] = {"dbhygiene": dict(summary, engine="mysql")}
    report = _report_kinds.build_report("audit", sorted(results), sorted(results), results, True, {})
    report["lock_chains"] = [
        {"host": "db0", "root": 1, "user": v, "database": v, "application": v, "state": "idle", "visible": True}
        for v in HOSTILE
    ]
    report["lock_cycles"] = [{"host": HOSTILE[0], "sessions": [1, 2]}]
    markdown = _report_kinds.render_markdown(report)
    sessions = [
        (f"db{n}", n, v, v, v, "10.0.0.5", "idle", "1m40s", "ghost", "would terminate") for n, v in enumerate(HOSTILE)
    ]
    chains = [("db0", 1, v, v, v, "idle", "", "", "") for v in HOSTILE]
    _check(markdown, sessions + chains)
    assert "- **&lt;script&gt;alert(1)&lt;/script&gt;**: sessions 1, 2 wait for each other" in markdown


def test_the_drain_report_shows_hostile_values_as_text():
    results = {}
    for number, value in enumerate(HOSTILE):
        result = {
            "state": "drained",
            "databases": [value],
            "changes": [{"change": "locked", "account": value, "database": value, "reason": value}],
            "terminated": [_session(number, value)],
            "closed": [value],
        }
        summary = dict(_change_window.drain_summary(result), engine="mysql")
        results[f"db{number}"] = dict(result, dbhygiene=summary)
    report = _report_kinds.build_report("drain", sorted(results), sorted(results), results, False, {})
    report["audit_log"] = "<i>trail</i>"
    markdown = _change_window.render_markdown(report)
    hosts = [(f"db{n}", "mysql", "ok", "drained", v, 1, 1, v) for n, v in enumerate(HOSTILE)]
    changes = [(f"db{n}", "locked", f"{v} on {v}", v) for n, v in enumerate(HOSTILE)]
    _check(markdown, hosts + changes)
    assert "- audit trail: &lt;i&gt;trail&lt;/i&gt;" in markdown


def test_table_escapes_every_cell_and_rules_every_column():
    from ansible_collections.dbhygiene.sessions.plugins.plugin_utils._report_markdown import table

    assert table(("host", "note"), [("db|1", "two\nlines"), (None, 3)]) == [
        "| host | note |",
        "| --- | --- |",
        "| db\\|1 | two lines |",
        "|  | 3 |",
    ]
