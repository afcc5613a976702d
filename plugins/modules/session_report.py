#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Documentation of the action plugin of the same name (plugins/action/session_report.py),
# which runs on the control node; there is no module code.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: session_report
short_description: Write the fleet report of the audit or enforce role
version_added: 0.1.0
author: dbhygiene.sessions contributors (@dbhygiene)
description:
  - Reads every play host's registered result (O(result_var)) and writes a JSON and a Markdown report into O(report_dir) on
    the control node, mode 0600, as C(<kind>-<time>-<run>.json/.md) (the time to the microsecond and a tag of the run,
    concurrent runs never replace each other's) and C(<kind>-latest.json/.md). Then the oldest time-stamped reports of the
    same kind beyond O(keep) are removed.
  - A dry run (check mode) of the enforce or drain role writes C(<kind>-check-<time>-<run>.json/.md) and
    C(<kind>-check-latest.json/.md) instead, kept and pruned apart, so that C(<kind>-latest) stays the last real run's. The
    audit role changes nothing in any mode, so every run of it writes C(audit-latest). The JSON says C(check_mode), the
    Markdown's first line says a dry run is one.
  - With O(check_var), a run whose variables' check (the role's C(policy_check) task) failed writes its report saying why it
    stopped (C(stopped); every host C(reason_code=stopped)), so that no older report looks current.
  - With O(pattern), the report of a play that has no host to work on. When none of O(pattern_hosts) is among the hosts
    this play runs on (every host of the inventory that C(--limit) leaves), the report says why, naming the group,
    C(dbhygiene_hosts) and the inventory, and the result's C(stopped) has that message (the roles then fail the run); else
    nothing is written and C(hosts) lists the hosts to work on.
  - Per host, what was seen, ended (or, in check mode, would be ended), not ended and why; hosts that failed, were
    unreachable or never got a result, with the message and a reason code (C(unreachable), C(login), C(privilege),
    C(limit), C(threshold), C(policy), C(busy), C(timeout), C(unknown_outcome), C(no_result), C(stopped), C(error)), in words
    in the Markdown; totals (with C(unknown), the sessions signalled whose fate could not be learned).
  - A host that failed after sessions were ended shows both, the sessions ended and why it failed.
  - 'Beside the JSON and Markdown, one self-contained HTML page, C(<kind>-<time>-<run>.html) and C(<kind>-latest.html)
    (a dry run''s C(<kind>-check-latest.html), with a banner saying so at the top): the fleet totals, a table per host,
    the lock chains and, as inline SVG charts, the trends over the reports of the kind kept in O(report_dir) (sessions
    seen, ended or would end per rule, failed hosts; the audit''s also oldest transaction and longest lock wait). No
    script, no font, nothing from the network; every value is escaped. From O(html_template) when given.'
  - The report's figures go into O(metrics_file) as OpenMetrics text for node_exporter's textfile collector, merged with
    what the other roles' runs left there and replaced atomically under a lock (concurrent runs never leave half a file).
  - In an AWX job (C(awx_job_id) set) that writes the report or the trail to the roles' default path, inside the job's
    throw-away container, a warning says so and names the variable to set.
  - 'A run that is part of a sliced sweep (a sweep split into concurrent runs over parts of the inventory) writes the report
    of the whole sweep instead: each run records its hosts'' results in the sweep''s directory under O(report_dir)
    (C(<kind>-sweep.<id>.d/), one private file per host) and, under a lock of that directory, rewrites the sweep''s report
    C(<kind>-<time>-sweep.<id>.json/.md) (and C(<kind>-latest.json/.md)) from every host of every run so far, with a
    C(sweep) part naming the runs; whichever run ends last leaves the complete report. A dry run (check mode) and a real
    run are two sweeps (C(sweep_check.<id>)).'
  - 'The sweep is AWX''s workflow job when the job was launched by one (C(awx_workflow_job_id): the slices of a sliced job
    template), else none when the run is an AWX job of its own (C(awx_job_id)), else the play''s C(dbhygiene_sweep_id),
    else none: a run of no sweep writes its own report. C(dbhygiene_sweep_slices), when set, is how many runs make the
    sweep; the report then says how many are still to report.'
  - Pruning (O(keep)) counts a sweep's report once and removes the sweep's directory with it, never while a run of that
    sweep holds its lock.
  - The totals also go out as C(set_stats) data (C(dbhygiene_enforce) / C(dbhygiene_audit) / C(dbhygiene_drain)), which AWX
    shows as the job's artifacts, with C(check_mode) (true for a dry run) and C(stopped) (why the run stopped, or null).
  - Meant to run once per play on the control node, after the per-host task (C(run_once=true), in an C(always) section so it
    also runs when hosts failed); the roles do that.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
options:
  kind:
    description: Which role's results these are.
    type: str
    required: true
    choices: [audit, enforce, drain]
  result_var:
    description: Name of the registered variable holding each host's result.
    type: str
    required: true
  report_dir:
    description: Directory on the control node for the report files.
    type: path
    required: true
  audit_log:
    description: The audit trail path, to name in the report.
    type: path
  hosts:
    description: Hosts to report on. Default, all hosts of the play (C(ansible_play_hosts_all)).
    type: list
    elements: str
  keep:
    description: How many time-stamped reports of O(kind) to keep in O(report_dir); V(0) keeps every one.
    type: int
    default: 30
  check_var:
    description: Name of the variable the role's variables check (C(policy_check)) registered; when it failed, the report
      says the run stopped and why.
    type: str
  html_template:
    description:
      - A Jinja2 template on the control node for the HTML page (rendered with autoescape on). Default, the collection's
        C(plugins/plugin_utils/templates/fleet_report.html.j2).
    type: path
  metrics_file:
    description: The OpenMetrics file to merge the report's figures into. Default, C(dbhygiene.prom) in O(report_dir).
    type: path
  pattern:
    description: The host pattern of the play to come (C(dbhygiene_hosts), default V(databases)); see O(pattern_hosts).
    type: str
  pattern_hosts:
    description: The hosts of O(pattern) in the whole inventory, C(--limit) aside (the C(inventory_hostnames) lookup).
    type: list
    elements: str
    default: []
attributes:
  check_mode:
    support: full
    details: The report is written in check mode too; it says it is a dry run.
  diff_mode:
    support: none
  platform:
    support: N/A
    platforms: posix
  action:
    support: full
  async:
    support: none
  bypass_host_loop:
    support: none
"""

EXAMPLES = r"""
- name: Write the fleet report
  dbhygiene.sessions.session_report:
    kind: enforce
    result_var: enforce_result
    report_dir: ~/dbhygiene/reports
  run_once: true
  delegate_to: localhost
"""

RETURN = r"""
report:
  description: Paths of the report written (C(json), C(markdown), C(html)).
  returned: success
  type: dict
metrics_file:
  description: The metrics file written.
  returned: success
  type: str
totals:
  description:
    - Fleet totals (hosts, ok, failed, failed_by_reason, sessions_seen; enforce, terminated, cancelled, ended, not_ended;
      audit, would_end, alerting).
  returned: success
  type: dict
failed_hosts:
  description: Host name to the message of its failure.
  returned: success
  type: dict
failed_host_reasons:
  description: Host name to the reason code of its failure.
  returned: success
  type: dict
check_mode:
  description: Whether this is a dry run.
  returned: always
  type: bool
stopped:
  description: Why the run stopped before any database was contacted (its variables' check failed, or the play has no host
    to work on), or null.
  returned: success
  type: str
hosts:
  description: With O(pattern), the hosts the play will work on.
  returned: when O(pattern) is given and has hosts to work on
  type: list
  elements: str
sweep:
  description:
    - The sweep the report covers (C(id), C(source) the variable it came from, C(slices), C(runs) each with C(run), C(time),
      C(job_id), C(hosts), C(runs_missing), C(complete), C(hosts) the number of hosts), as in the report's C(sweep) part.
  returned: when the run is part of a sliced sweep
  type: dict
"""
