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
  - Per host, what was seen, ended (or, in check mode, would be ended), not ended and why; hosts that failed, were
    unreachable or never got a result, with the message and a reason code (C(unreachable), C(login), C(privilege),
    C(limit), C(threshold), C(policy), C(busy), C(timeout), C(unknown_outcome), C(no_result), C(error)), in words in the
    Markdown; totals (with C(unknown), the sessions signalled whose fate could not be learned).
  - A host that failed after sessions were ended shows both, the sessions ended and why it failed.
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
  - The totals also go out as C(set_stats) data (C(dbhygiene_enforce) / C(dbhygiene_audit)), which AWX shows as the job's artifacts.
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
  description: Paths of the report written (C(json), C(markdown)).
  returned: success
  type: dict
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
sweep:
  description:
    - The sweep the report covers (C(id), C(source) the variable it came from, C(slices), C(runs) each with C(run), C(time),
      C(job_id), C(hosts), C(runs_missing), C(complete), C(hosts) the number of hosts), as in the report's C(sweep) part.
  returned: when the run is part of a sliced sweep
  type: dict
"""
