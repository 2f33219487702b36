#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: todoapi.pgbackup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: dr_report
short_description: Write the disaster recovery report (Markdown and JSON) with the achieved RTO and RPO
version_added: 0.1.0
description:
  - Turns the steps of a disaster recovery (name, start, end, status, detail) into a report for the incident record,
    C(<report_dir>/<prefix>-<start>.md) for people and C(.json) for tools, each written atomically.
  - The achieved RTO is the total wall time from O(started_at) to O(finished_at); the achieved RPO is the data-loss
    window (O(data_loss_seconds), or the time between the moment the backup's data is from - a logical backup's start,
    when pg_dump took its snapshot; a physical one's finish - and O(reference_time)). Both are compared
    with O(objectives) (defaults from the seed's Disaster Recovery Plan, 4 h and 24 h).
  - Meant to run in the C(always) section of the recovery, so that a failed recovery is documented too; a failed step
    (or O(error)) makes the outcome V(failed) and the RTO not met.
options:
  steps:
    description:
      - The recovery's steps in order, each a dict with C(name), C(started) and C(finished) (ISO 8601, UTC when no
        offset is given), C(status) (V(ok), V(failed), V(skipped) or V(not_run)) and C(detail) (text or data).
    type: list
    elements: dict
    default: []
  expected_steps:
    description: Names of all steps of the procedure; those missing from O(steps) are reported as V(not_run).
    type: list
    elements: str
    default: []
  started_at:
    description: When the recovery started (ISO 8601).
    type: str
    required: true
  finished_at:
    description: When it ended (ISO 8601). Defaults to now.
    type: str
  objectives:
    description: Recovery objectives.
    type: dict
    default: {}
    suboptions:
      rto_hours:
        description: Recovery time objective in hours.
        type: float
        default: 4
      rpo_hours:
        description: Recovery point objective in hours.
        type: float
        default: 24
  backup:
    description: Manifest of the backup that was restored (or chosen), if any.
    type: dict
  data_loss_seconds:
    description: The data-loss window in seconds, when known (e.g. from M(todoapi.pgbackup.dr_assess)).
    type: float
  reference_time:
    description:
      - Time the data was lost (e.g. when the server failed), to compute the RPO from the backup's data time (see above)
        when O(data_loss_seconds) is not given. Defaults to O(started_at).
    type: str
  recovery_point:
    description:
      - Time of the last transaction a point-in-time recovery replayed (ISO 8601, e.g. C(pg_last_xact_replay_timestamp())).
        When given, the RPO is the time from it to O(reference_time).
    type: str
  context:
    description: Facts about the recovery shown at the top of the report (target host, database, method, source).
    type: dict
    default: {}
  error:
    description: Error message of the failure that ended the recovery, if any.
    type: str
  fencing:
    description:
      - What was done about the old database servers, each a dict with C(host), C(status) (V(fenced) - it takes no more
        writes from the application, V(pending) - it did not answer, V(failed)), C(detail) and C(checked_at).
      - Shown in the report's section "Fencing of the old servers"; each one not fenced becomes the first follow-up item.
    type: list
    elements: dict
    default: []
  report_dir:
    description: Directory for the report files (created with mode 0750 if missing).
    type: path
    default: /var/log/todoapi-dr
  prefix:
    description: File name prefix of the report files.
    type: str
    default: dr-report
  mode:
    description: File mode of the report files.
    type: raw
    default: '0640'
notes:
  - Supports check mode; it computes and returns the report without writing it.
seealso:
  - module: todoapi.pgbackup.dr_assess
author:
  - todoapi.pgbackup maintainers (@todoapi)
'''

EXAMPLES = r'''
- name: Document the recovery
  todoapi.pgbackup.dr_report:
    started_at: "{{ dr_started_at }}"
    steps: "{{ dr_steps }}"
    expected_steps: [assess, prepare, restore, verify, application]
    objectives: {rto_hours: 4, rpo_hours: 24}
    backup: "{{ assessed.backup }}"
    data_loss_seconds: "{{ assessed.data_loss_seconds }}"
    context: {database: TodoDb, target: "{{ inventory_hostname }}"}
    report_dir: /var/log/todoapi-dr
  register: report
'''

RETURN = r'''
md_path:
  description: Path of the Markdown report (also in check mode, where it is not written).
  returned: always
  type: str
  sample: /var/log/todoapi-dr/dr-report-20240106T143000Z.md
json_path:
  description: Path of the JSON report.
  returned: always
  type: str
outcome:
  description: V(succeeded) or V(failed).
  returned: always
  type: str
rto_seconds:
  description: Achieved recovery time (total wall time) in seconds.
  returned: always
  type: float
rpo_seconds:
  description:
    - Achieved recovery point (data-loss window) in seconds.
    - V(null) (JSON C(null), Python C(None)) when no backup was chosen, for example when the recovery failed at the
      assess step; the Markdown report then says "unknown (no backup selected)". Treat it as "not measured", not as 0.
  returned: always
  type: float
  sample: 3.2
rto_met:
  description: Whether the recovery succeeded within the RTO objective.
  returned: always
  type: bool
rpo_met:
  description: Whether the data-loss window is within the RPO objective; V(null) when RV(rpo_seconds) is (Markdown C(n/a)).
  returned: always
  type: bool
failed_steps:
  description: Names of the failed steps.
  returned: always
  type: list
  elements: str
report:
  description: The whole report, as written to the JSON file.
  returned: always
  type: dict
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.todoapi.pgbackup.plugins.module_utils.ops import dr_report
from ansible_collections.todoapi.pgbackup.plugins.module_utils.ansible_module.common import run_or_fail


def file_mode(module, value):
    try:
        return int(str(value), 8) if not isinstance(value, int) else value
    except ValueError:
        module.fail_json(msg="mode '%s' is not an octal file mode." % value)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            steps=dict(type="list", elements="dict", default=[]),
            expected_steps=dict(type="list", elements="str", default=[]),
            started_at=dict(type="str", required=True),
            finished_at=dict(type="str"),
            objectives=dict(type="dict", default={}, options=dict(
                rto_hours=dict(type="float", default=4),
                rpo_hours=dict(type="float", default=24))),
            backup=dict(type="dict"),
            data_loss_seconds=dict(type="float"),
            reference_time=dict(type="str"),
            recovery_point=dict(type="str"),
            context=dict(type="dict", default={}),
            error=dict(type="str"),
            fencing=dict(type="list", elements="dict", default=[]),
            report_dir=dict(type="path", default="/var/log/todoapi-dr"),
            prefix=dict(type="str", default="dr-report"),
            mode=dict(type="raw", default="0640"),
        ),
        supports_check_mode=True,
    )
    params = module.params
    mode = file_mode(module, params["mode"])
    report = run_or_fail(module, dr_report.build, params["steps"], params["started_at"], finished_at=params["finished_at"],
                         objectives=params["objectives"], backup=params["backup"],
                         data_loss_seconds=params["data_loss_seconds"], reference_time=params["reference_time"],
                         expected_steps=params["expected_steps"], context=params["context"], error=params["error"],
                         recovery_point=params["recovery_point"], fencing=params["fencing"])
    if module.check_mode:
        md_path, json_path = dr_report.report_paths(params["report_dir"], report["started_at"], params["prefix"])
    else:
        md_path, json_path = run_or_fail(module, dr_report.write, report, params["report_dir"], params["prefix"], mode)
    module.exit_json(changed=not module.check_mode, md_path=md_path, json_path=json_path, outcome=report["outcome"],
                     rto_seconds=report["rto_seconds"], rpo_seconds=report["rpo_seconds"], rto_met=report["rto_met"],
                     rpo_met=report["rpo_met"], failed_steps=report["failed_steps"], report=report)


if __name__ == "__main__":
    main()
