# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller-side helpers of the roles, in one namespace for the action plugins.

Private to the collection. The action plugins ``session_enforce``,
``session_audit``, ``policy_check`` and ``session_report`` use them as
``_fleet.<name>``; each piece lives in the file of its concern (no Ansible
import in any, so they are unit tested as plain Python):

* ``_trail``: the audit trail (records, credential redaction, appends under a lock);
* ``_report_model``: thresholds, per-host summaries, failure reason codes, the fleet report;
* ``_report_markdown``: the fleet report as Markdown;
* ``_report_html``: the fleet report as one HTML page with trends (a Jinja2 template);
* ``_metrics``: the report's figures as OpenMetrics text (node_exporter's textfile collector);
* ``_outputs``: default paths, the AWX warning about them, the report files;
* ``_files``: private (0600), atomic files on the controller;
* ``_connection``: the engine names and ``run_on`` choices (from the engine registry,
  ``module_utils/_engines.py``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

# Re-exported: the action plugins' names for these.
from ansible_collections.dbhygiene.sessions.plugins.module_utils._time import iso_utc_z as iso
from ansible_collections.dbhygiene.sessions.plugins.module_utils._time import utc_now
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils._connection import ENGINES, RUN_ON
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils._files import (
    controller_path,
    write_private,
)
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils._metrics import default_path as default_metrics_path
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils._metrics import write_metrics
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils._outputs import (
    DEFAULT_AUDIT_LOG,
    DEFAULT_REPORT_DIR,
    DEFAULT_REPORT_KEEP,
    awx_default_path_warnings,
    no_hosts_message,
    play_targets,
    prune_reports,
    run_tag,
    write_report,
)
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils._report_html import TemplateError, load_template
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils._report_kinds import render_markdown
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils._report_model import (
    FAILURE_REASONS,
    REPORT_QUERY_CHARS,
    THRESHOLD_KEYS,
    audit_summary,
    brief,
    build_report,
    enforce_summary,
    failure_reason,
    parse_thresholds,
)
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils._trail import (
    TRAIL_QUERY_CHARS,
    append_lines,
    job_id,
    outcome_for,
    redact_query,
    session_fields,
    timeouts_trail_records,
    trail_records,
)

__all__ = [
    "DEFAULT_AUDIT_LOG",
    "DEFAULT_REPORT_DIR",
    "DEFAULT_REPORT_KEEP",
    "ENGINES",
    "FAILURE_REASONS",
    "REPORT_QUERY_CHARS",
    "RUN_ON",
    "THRESHOLD_KEYS",
    "TRAIL_QUERY_CHARS",
    "TemplateError",
    "append_lines",
    "audit_summary",
    "awx_default_path_warnings",
    "brief",
    "build_report",
    "controller_path",
    "default_metrics_path",
    "enforce_summary",
    "failure_reason",
    "iso",
    "job_id",
    "load_template",
    "no_hosts_message",
    "outcome_for",
    "parse_thresholds",
    "play_targets",
    "prune_reports",
    "redact_query",
    "render_markdown",
    "run_tag",
    "session_fields",
    "timeouts_trail_records",
    "trail_records",
    "utc_now",
    "write_metrics",
    "write_private",
    "write_report",
]
