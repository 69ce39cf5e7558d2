#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: upgrade_cutover
short_description: A server's downtime in one step - stop, back up, swap, carry the preferences, migrate, start, verify
version_added: 0.1.0
description:
  - Runs the steps of a server upgrade that happen while its services are down, in one module call on the host, so
    that the downtime is the work itself and not a task round trip per step.
  - The steps, in this order - V(stop) (drain and stop the services in the vendor's order, as
    M(clinops.upgrade.service_stop_ordered)), V(backup) (as M(clinops.upgrade.db_backup) with O(backup)),
    V(swap) (move the installation aside to C(<install_root><old_suffix>NNNN) and the staged release into its place),
    V(prefs) (as M(clinops.upgrade.prefs_migrate) from the old installation into the new one), V(migrate_offline) (as
    M(clinops.upgrade.schema_update) with C(phase=offline)), V(start) (the services that were running, in reverse
    order), V(verify) (the health checks until they pass or O(verify_wait) runs out, then O(restart_after_verify)).
  - Each step runs the same code as the module it names, in-process, with that module's options validated against
    that module's own argument spec. All options of every step are validated before the first step starts.
  - Each step is journaled in O(journal) (the format of M(clinops.upgrade.upgrade_journal)) as it starts and ends, with
    the facts a rollback needs (which services were running, the backup, the old installation's folder). A rerun after
    an interruption skips the steps the journal shows as done. The attempt must be open (step C(begin) recorded).
  - On the first failure it stops, journals the step as failed and fails with the step's message; it does not roll
    back. The caller decides (the role M(clinops.upgrade.server_upgrade) puts the old installation back and restores
    the database when the schema was touched).
  - Before the downtime it can also stage the release (V(stage)), and after it clean up (V(cleanup)), so that a client's
    whole upgrade is one call.
  - POSIX hosts. On Windows the role runs the same steps one module at a time.
author:
  - clinops.upgrade contributors (@clinops)
extends_documentation_fragment:
  - clinops.upgrade.attributes
attributes:
  check_mode:
    support: full
    details: Reads the journal and returns the steps that would run (RV(pending)); stops, moves and writes nothing.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  journal:
    description: The host's upgrade journal (JSON lines), with an open attempt for O(target).
    type: path
    required: true
  run_id:
    description: Identifier of the playbook run, written into each journal entry.
    type: str
    required: true
  target:
    description: The version being installed. The V(swap) step takes an installation whose version file says so as done.
    type: str
    required: true
  steps:
    description:
      - The steps to run, in this order. The default is the downtime of a server.
      - V(stage) unpacks O(artifact) into O(staging_dir) (and the old release's O(defaults_dir) from O(old_artifact));
        V(cleanup) removes O(staging_dir) and keeps the O(keep_old) newest old installations. A client runs
        V(stage), V(swap), V(prefs), V(verify), V(cleanup) in one call.
      - No path leaves its folder. V(stage) refuses the whole archive, before writing any member, when a member would
        leave O(staging_dir) (an absolute name, C(..), a symlink leading out, a member written through a symlink
        member, a hard link to a path outside or to a symlink, a device). V(swap) refuses when O(install_root), the
        staged release or the old folder is a symlink, or the staged release leads outside O(staging_dir).
        V(cleanup) never removes through a symlink; a symlinked O(staging_dir) or old installation is left alone
        with a warning.
    type: list
    elements: str
    choices: [stage, stop, backup, swap, prefs, migrate_offline, start, verify, cleanup]
    default: [stop, backup, swap, prefs, migrate_offline, start, verify]
  install_root:
    description:
      - The installation folder the services run from.
      - Must be the real folder, not a symlink. Like every path option of this module, a path with a C(..)
        component is refused before anything is done.
    type: path
    required: true
  staged:
    description:
      - The new release, unpacked beside the installation (same file system) before anything stopped.
      - Default - the folder the V(stage) step recorded in the journal.
    type: path
  artifact:
    description: The release archive (tar, tar.gz, tar.bz2, tar.xz or zip) the V(stage) step unpacks.
    type: path
  staging_dir:
    description:
      - Folder beside the installation that V(stage) unpacks into (what an interrupted run left there is removed first)
        and V(cleanup) removes.
      - V(stage) refuses it when it or the folder holding it is a symlink.
    type: path
  top_dir:
    description: The folder at the top of O(artifact) that becomes the installation (relative; C(..) is refused).
    type: str
  old_artifact:
    description: The installed version's release archive, whose pristine preferences tell site values from old defaults.
    type: path
  old_top_dir:
    description: The folder at the top of O(old_artifact) (relative; C(..) is refused).
    type: str
  defaults_dir:
    description:
      - Folder of the preferences inside a release. V(stage) unpacks only that part of O(old_artifact); V(prefs) uses it
        as C(defaults) unless O(prefs) sets one.
    type: str
  keep_old:
    description: Old installations (C(<install_root><old_suffix>NNNN)) that V(cleanup) keeps, the newest ones.
    type: int
    default: 2
  version_file:
    description: File in the installation, relative to O(install_root), whose first line is the version.
    type: str
    default: VERSION
  old_suffix:
    description: The old installation moves to C(<install_root><old_suffix>NNNN), numbered after the highest one kept.
    type: str
    default: _old
  services:
    description:
      - The services in stop order, as the O(clinops.upgrade.service_stop_ordered#module:services) option of
        M(clinops.upgrade.service_stop_ordered). They start in reverse order.
      - Needed by the steps V(stop) and V(start) and by O(restart_after_verify); a client without services leaves it out.
    type: list
    elements: dict
    default: []
  supervisor_config:
    description: As in M(clinops.upgrade.service_stop_ordered).
    type: path
  drain:
    description: As the O(clinops.upgrade.service_stop_ordered#module:drain) option of M(clinops.upgrade.service_stop_ordered), for the V(stop) step.
    type: dict
  backup:
    description:
      - Options of M(clinops.upgrade.db_backup) for the V(backup) step (C(state=present) is implied). Omitted - the step
        is journaled as skipped.
      - Secrets in it (C(login_password)) are masked in the output like the module's own.
    type: dict
  prefs:
    description:
      - Options of M(clinops.upgrade.prefs_migrate) for the V(prefs) step, without C(src) and C(dest) (the old
        installation and O(install_root)). Omitted - the step is skipped.
    type: dict
  migrate:
    description:
      - Options of M(clinops.upgrade.schema_update) for the V(migrate_offline) step, without C(phase). Omitted - the
        step is skipped.
    type: dict
  checks:
    description:
      - Health checks of the V(verify) step, each retried once a second until it passes or O(verify_wait) runs out.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: What the check is called in messages.
        type: str
      type:
        description:
          - V(command) runs O(checks[].argv) in O(install_root) and wants exit code 0 and O(checks[].expect) in its output.
          - V(tcp) wants a connection to O(checks[].host):O(checks[].port).
          - V(dicom) wants a C-ECHO answered (needs pynetdicom), as M(clinops.upgrade.dicom_echo).
        type: str
        required: true
        choices: [command, tcp, dicom]
      argv:
        description: The command, for V(command).
        type: list
        elements: str
      expect:
        description: Regular expression the output must contain; C({version}) stands for O(target).
        type: str
      host:
        description: Host, for V(tcp) and V(dicom).
        type: str
      port:
        description: Port, for V(tcp) and V(dicom).
        type: int
      called_aet:
        description: AE title of the node, for V(dicom).
        type: str
      calling_aet:
        description: Our AE title, for V(dicom).
        type: str
        default: CLINOPS_UPG
  verify_wait:
    description: Seconds the restarted services get to pass every check.
    type: int
    default: 60
  restart_after_verify:
    description: Services restarted once the checks passed (PMOD restarts its license server).
    type: list
    elements: str
    default: []
notes:
  - Only the steps still pending are journaled and run; RV(skipped_done) lists the others.
seealso:
  - module: clinops.upgrade.upgrade_journal
  - module: clinops.upgrade.service_stop_ordered
  - module: clinops.upgrade.db_backup
  - module: clinops.upgrade.prefs_migrate
  - module: clinops.upgrade.schema_update
"""

EXAMPLES = r"""
- name: Cut over to PMOD 4.4.0
  clinops.upgrade.upgrade_cutover:
    journal: /var/lib/clinops/journal.jsonl
    run_id: "{{ upgrade_run_id }}"
    target: 4.4.0
    install_root: /opt/PMOD
    staged: /opt/PMOD_staging/pmod-4.4.0
    services:
      - {name: pmod-ds, backend: supervisor, port: 104}
      - {name: pmod-ts, backend: supervisor, port: 7000}
      - {name: pmod-ls, backend: supervisor}
    supervisor_config: /etc/supervisor/supervisord.conf
    backup:
      engine: sqlite
      path: /data/pmod/pmod.sqlite
      dest: /var/backups/pmod
      label: pre-4.4.0
      verify: quick
    prefs:
      items:
        - {path: properties/Config.properties, mode: merge, format: properties}
      backup_dir: /var/backups/pmod/prefs-4.4.0
    migrate:
      engine: sqlite
      path: /data/pmod/pmod.sqlite
      migrations: /opt/PMOD/sql
    checks:
      - {name: Echo TS, type: command, argv: [python3, bin/pmodctl.py, echo-ts], expect: "^OK PMOD-TS {version}"}
      - {name: C-ECHO, type: dicom, host: 127.0.0.1, port: 104, called_aet: PMOD_DS}
    restart_after_verify: [pmod-ls]
"""

RETURN = r"""
pending:
  description: The steps that were not done yet when the module started (all of them run, unless one fails).
  returned: always
  type: list
  elements: str
skipped_done:
  description: The steps the journal already showed as done.
  returned: always
  type: list
  elements: str
steps:
  description: The steps run, with C(result) (V(ok), V(skipped), V(failed)), C(seconds) and, for a failure, C(message).
  returned: always
  type: list
  elements: dict
failed_step:
  description: The step that failed.
  returned: failure
  type: str
step_result:
  description: What the failing step's module returned (its own failure details).
  returned: failure
  type: dict
data:
  description: The facts of the attempt so far (C(previously_running), C(backup_path), C(old_dir), ...).
  returned: when a step ran
  type: dict
attempt:
  description: The journal's attempt after the run, as RV(clinops.upgrade.upgrade_journal#module:attempt) of M(clinops.upgrade.upgrade_journal).
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.clinops.upgrade.plugins.module_utils.cutover import (
    DOWNTIME_STEPS, STEPS, Cutover, StepFailed, check_problems, validate_steps)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            journal=dict(type='path', required=True),
            run_id=dict(type='str', required=True),
            target=dict(type='str', required=True),
            steps=dict(type='list', elements='str', choices=list(STEPS), default=list(DOWNTIME_STEPS)),
            install_root=dict(type='path', required=True),
            staged=dict(type='path'),
            artifact=dict(type='path'),
            staging_dir=dict(type='path'),
            top_dir=dict(type='str'),
            old_artifact=dict(type='path'),
            old_top_dir=dict(type='str'),
            defaults_dir=dict(type='str'),
            keep_old=dict(type='int', default=2),
            version_file=dict(type='str', default='VERSION'),
            old_suffix=dict(type='str', default='_old'),
            services=dict(type='list', elements='dict', default=[]),
            supervisor_config=dict(type='path'),
            drain=dict(type='dict'),
            backup=dict(type='dict'),
            prefs=dict(type='dict'),
            migrate=dict(type='dict'),
            checks=dict(type='list', elements='dict', default=[], options=dict(
                name=dict(type='str'),
                type=dict(type='str', required=True, choices=['command', 'tcp', 'dicom']),
                argv=dict(type='list', elements='str'),
                expect=dict(type='str'),
                host=dict(type='str'),
                port=dict(type='int'),
                called_aet=dict(type='str'),
                calling_aet=dict(type='str', default='CLINOPS_UPG'),
            )),
            verify_wait=dict(type='int', default=60),
            restart_after_verify=dict(type='list', elements='str', default=[]),
        ),
        supports_check_mode=True,
    )
    errors = check_problems(module.params['checks'])
    try:
        errors.extend(validate_steps(module))
    except StepFailed as exc:
        errors.append(exc.msg)
    if errors:
        module.fail_json(msg='invalid input, nothing was stopped: ' + '; '.join(errors))
    Cutover(module).run()


if __name__ == '__main__':
    main()
