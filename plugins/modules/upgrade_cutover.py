#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: upgrade_cutover
short_description: The upgrade engine - every step of a server's or a client's upgrade, and the rollback
version_added: 0.1.0
description:
  - The only implementation of the steps of an upgrade, for servers and clients. Runs the steps asked for in one module
    call on the host, so that the downtime is the work itself and not a task round trip per step.
  - Before the stop - V(stage) (unpack O(artifact) into O(staging_dir), and the old release's pristine preferences),
    V(configure) (write the O(start_scripts) into the staged release, mode 0755, each through a temporary file renamed
    into place), V(migrate_pre) (as M(clinops.upgrade.schema_update) with C(phase=pre), the migrations read from the
    staged release).
  - The downtime - V(stop) (drain and stop the services in the vendor's order, as
    M(clinops.upgrade.service_stop_ordered)), V(backup) (as M(clinops.upgrade.db_backup) with O(backup)),
    V(swap) (move the installation aside to C(<install_root><old_suffix>NNNN) and the staged release into its place),
    V(prefs) (as M(clinops.upgrade.prefs_migrate) from the old installation into the new one), V(migrate_offline) (as
    M(clinops.upgrade.schema_update) with C(phase=offline)), V(start) (the services that were running, in reverse
    order), V(verify) (the health checks until they pass or O(verify_wait) runs out), V(restart_after_verify) (the
    services O(restart_after_verify) names, restarted).
  - After the verified start - V(migrate_post) (C(phase=post)), V(backup_after) (as M(clinops.upgrade.db_backup) with
    O(backup_after)), V(cleanup) (remove O(staging_dir), keep the O(keep_old) newest old installations).
  - A step with nothing to do (its option not given) is journaled as V(skipped).
  - Each step runs the same code as the module it names, in-process, with that module's options validated against
    that module's own argument spec. All options of every step are validated before the first step starts.
  - Each step is journaled in O(journal) (the format of M(clinops.upgrade.upgrade_journal)) as it starts and ends, with
    the facts a rollback needs (which services were running, the backup, the old installation's folder). A rerun after
    an interruption skips the steps the journal shows as done. The attempt must be open (step C(begin) recorded).
  - On the first failure it stops, journals the step as failed and fails with the step's message; it does not roll
    back by itself. The caller decides, and calls it again with O(op=rollback).
  - O(op=rollback) reads from the journal which steps were done or begun. When one of them is V(stop) or later, it stops
    what runs of the new version, moves the failed installation aside to
    C(<install_root>_failed_<target>_<attempt>), puts the old installation back, restores the database from the
    pre-upgrade backup (O(backup)) when V(migrate_offline) or V(migrate_post) touched the schema, starts the services
    that were running and runs the O(checks) against the old version. It removes O(staging_dir), closes the attempt
    (V(rolled_back), or V(failed) when nothing had been stopped) and releases the upgrade lock, and says what it
    restored (RV(restored), RV(message)). It refuses while the lock is held by another run.
  - POSIX hosts. The steps reach the host through one small interface (module_utils C(host)), which a Windows
    implementation will provide; until then the roles refuse Windows hosts in preflight.
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
      - A server runs every step; a client runs V(stage), V(swap), V(prefs), V(verify), V(cleanup). Ignored with
        O(op=rollback). The steps of O(flow) are skipped without it.
      - No path leaves its folder. V(stage) refuses the whole archive, before writing any member, when a member would
        leave O(staging_dir) (an absolute name, C(..), a symlink leading out, a member written through a symlink
        member, a hard link to a path outside or to a symlink, a device). V(swap) refuses when O(install_root), the
        staged release or the old folder is a symlink, or the staged release leads outside O(staging_dir).
        V(cleanup) never removes through a symlink; a symlinked O(staging_dir) or old installation is left alone
        with a warning.
    type: list
    elements: str
    choices: [tasks_stop, stage, configure, migrate_pre, warn, lock, stop, backup, swap, prefs, migrate_offline, update, start,
              unlock, verify, restart_after_verify, relogin, migrate_post, backup_after, cleanup, tasks_start]
    default: [stop, backup, swap, prefs, migrate_offline, start, verify, restart_after_verify]
  op:
    description:
      - V(run) runs the pending O(steps).
      - V(rollback) puts the old version back after a failed step, as described above, and closes the attempt.
    type: str
    choices: [run, rollback]
    default: run
  failure:
    description: With O(op=rollback), the message of the failure, for the journal and RV(message).
    type: str
  failed_step:
    description:
      - With O(op=rollback), the step that failed when the engine did not journal the failure itself (a task of the
        role failed); it is journaled as failed and counts as touched.
    type: str
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
      - With O(op=rollback), where the pre-upgrade backup is (C(state=restored) is implied, C(verify) and C(keep) are
        left out).
      - Secrets in it (C(login_password)) are masked in the output like the module's own; pass the password as
        O(login_password) instead, so that it is masked even when the module refuses its input.
    type: dict
  login_password:
    description:
      - The database password for O(backup), O(backup_after), O(migrate) and the C(connection) of O(drain), where they
        set none of their own C(login_password).
      - Masked in every output (no_log), even when the module refuses its input before it looks at those options; it
        is never written to O(journal).
    type: str
  prefs:
    description:
      - Options of M(clinops.upgrade.prefs_migrate) for the V(prefs) step, without C(src) and C(dest) (the old
        installation and O(install_root)). Omitted - the step is skipped.
    type: dict
  migrate:
    description:
      - Options of M(clinops.upgrade.schema_update) for the steps V(migrate_pre), V(migrate_offline) and
        V(migrate_post), without C(phase). Omitted - the steps are skipped.
      - V(migrate_pre) reads the migrations folder (C(migrations)) from the staged release when it lies under
        O(install_root).
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
    description: Services the V(restart_after_verify) step restarts once the checks passed (PMOD restarts its license server).
    type: list
    elements: str
    default: []
  start_scripts:
    description:
      - Start scripts the V(configure) step writes into the staged release (the profile's C(start_scripts)). Each
        changes to O(install_root) and runs O(start_script_interpreter) with the program and its arguments; an argument
        under C(properties/) is made absolute. Omitted - the step is skipped.
    type: list
    elements: dict
    default: []
    suboptions:
      dest:
        description: Where the script goes, relative to the release.
        type: str
        required: true
      program:
        description: The program the script runs, relative to the installation.
        type: str
        required: true
      args:
        description: Its arguments.
        type: list
        elements: str
        default: []
  start_script_interpreter:
    description: The interpreter the start scripts run the program with.
    type: str
  product:
    description: The product's name, in the start scripts' comment line.
    type: str
    default: ''
  migrate_command_phase:
    description: The phase whose step runs a vendor tool (O(migrate) with C(command)); the other two are skipped.
    type: str
    choices: [pre, offline, post]
    default: offline
  backup_after:
    description:
      - Options of M(clinops.upgrade.db_backup) for the V(backup_after) step (C(state=present) is implied). Omitted - the
        step is skipped.
    type: dict
  flow:
    description:
      - A product's own update flow around the steps (KSAMU's - see C(docs/PROFILES.md)), the steps V(tasks_stop)
        (before everything), V(warn) and V(lock) (before V(stop)), V(update) (after V(migrate_offline)), V(unlock)
        (after V(start)), V(relogin) (after V(restart_after_verify)) and V(tasks_start) (the last). Omitted - those
        steps are skipped.
      - Commands are argv lists run on the host; C({message}), C({minutes}), C({version}) (O(target)) and C({kind}) are
        filled in.
      - With O(op=rollback), whatever else happened, the database is unlocked (when V(lock) was done or begun), the
        users are told (O(flow.failed_message)) and the background tasks are started again (when V(tasks_stop) was
        done or begun).
    type: dict
    suboptions:
      kind:
        description:
          - V(major) or V(minor). Omitted - decided from O(flow.from_version) (or the attempt's C(from_version)) and
            O(target), V(major) when one of the first O(flow.major_blocks) blocks differs.
        type: str
        choices: [major, minor]
      from_version:
        description: The installed version the update starts from.
        type: str
      major_blocks:
        description: How many leading version blocks make the database scripts' version (KSAMU - 3).
        type: int
        default: 3
      major_only_offline:
        description:
          - A minor update leaves out V(warn), V(lock), V(stop), V(start), V(unlock) and V(relogin) - users keep
            working (the profile's C(migrations.major_only_offline)).
        type: bool
        default: false
      command_timeout:
        description: Seconds each of the product's commands may take.
        type: int
        default: 60
      tasks:
        description: The product's background tasks (V(tasks_stop) and V(tasks_start)).
        type: dict
        suboptions:
          list:
            description: Lists the tasks, one a line.
            type: list
            elements: str
          stop:
            description: Stops the running tasks and starts no new one.
            type: list
            elements: str
          start:
            description: Starts the tasks again.
            type: list
            elements: str
          running:
            description: Regular expression matching a line of O(flow.tasks.list) of a task still running.
            type: str
            default: '\brunning\b'
          timeout:
            description: Seconds to wait until no task runs.
            type: int
            default: 600
      warning:
        description: The warning counted down on the server and every user's screen before V(lock) (V(warn)).
        type: dict
        suboptions:
          argv:
            description: Broadcasts C({message}) to the server and every logged-on user.
            type: list
            elements: str
          minutes:
            description: The length of the countdown.
            type: int
            default: 8
          points:
            description: Minutes left at which the warning is said again (besides the start).
            type: list
            elements: int
            default: [5, 2, 1]
          seconds_per_minute:
            description: Seconds of one countdown minute (60; less only to shorten a test or a demo).
            type: float
            default: 60
          text:
            description: The warning; C({minutes}) is the time left.
            type: str
            default: 'Update to {version}: the database is locked in {minutes} min.'
      lock:
        description: The product's database lock (V(lock) and V(unlock)).
        type: dict
        suboptions:
          lock:
            description: Locks the database.
            type: list
            elements: str
          unlock:
            description: Unlocks it.
            type: list
            elements: str
      updater:
        description:
          - The vendor's updater (V(update)), followed through its log - progress lines go to the host's journal and
            the result (RV(data).update_progress); an error line, a log that stops growing for O(flow.updater.stall_timeout)
            or a run longer than O(flow.updater.timeout) fails the step with the log's last lines.
        type: dict
        suboptions:
          argv:
            description: The updater's command.
            type: list
            elements: str
          log:
            description: The log it writes (only what it appends is read).
            type: str
          progress:
            description: Regular expression of a progress line.
            type: str
            default: '\bINFO\b'
          error:
            description: Regular expression of an error line.
            type: str
            default: '\bERROR\b'
          stall_timeout:
            description: Seconds the log may stay silent.
            type: int
            default: 300
          timeout:
            description: Seconds the updater may run.
            type: int
            default: 3600
      relogin_message:
        description: Broadcast after a major update (V(relogin)) - clients are asked to log in again.
        type: str
      failed_message:
        description: Broadcast after a rollback.
        type: str
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

- name: Put the old version back after a failed step
  clinops.upgrade.upgrade_cutover:
    op: rollback
    journal: /var/lib/clinops/journal.jsonl
    run_id: "{{ upgrade_run_id }}"
    target: 4.4.0
    install_root: /opt/PMOD
    staging_dir: /opt/PMOD_staging
    failure: "{{ ansible_failed_result.msg }}"
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
    checks:
      - {name: Echo TS, type: command, argv: [python3, bin/pmodctl.py, echo-ts], expect: "^OK PMOD-TS {version}"}
  register: rollback
"""

RETURN = r"""
pending:
  description: The steps that were not done yet when the module started (all of them run, unless one fails).
  returned: O(op=run)
  type: list
  elements: str
skipped_done:
  description: The steps the journal already showed as done.
  returned: O(op=run)
  type: list
  elements: str
steps:
  description: The steps run, with C(result) (V(ok), V(skipped), V(failed)), C(seconds) and, for a failure, C(message).
  returned: O(op=run)
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
result:
  description: With O(op=rollback), how the attempt was closed - V(rolled_back), or V(failed) when nothing had been stopped.
  returned: O(op=rollback)
  type: str
  sample: rolled_back
failure:
  description: With O(op=rollback), what failed (C(step <name> failed - ) and the message).
  returned: O(op=rollback)
  type: str
restored:
  description: With O(op=rollback), what was restored.
  returned: O(op=rollback) and success
  type: str
  sample: the old installation 4.3.0 was put back, the database was restored from /backups/pre-4.4.0.sqlite, its services were started and verified
message:
  description: With O(op=rollback), RV(failure) and RV(restored), as the journal's last entry says them.
  returned: O(op=rollback) and success
  type: str
after_stop:
  description: With O(op=rollback), whether a step from V(stop) on had been done or begun (the old version had to be restored).
  returned: O(op=rollback)
  type: bool
schema_touched:
  description: With O(op=rollback), whether V(migrate_offline) or V(migrate_post) had been done or begun (the database restored).
  returned: O(op=rollback)
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.clinops.upgrade.plugins.module_utils.cutover import (
    DOWNTIME_STEPS, MIGRATE_PHASES, STEPS, Cutover, StepFailed, check_problems, share_login_password, validate_steps)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            journal=dict(type='path', required=True),
            run_id=dict(type='str', required=True),
            target=dict(type='str', required=True),
            steps=dict(type='list', elements='str', choices=list(STEPS), default=list(DOWNTIME_STEPS)),
            op=dict(type='str', choices=['run', 'rollback'], default='run'),
            failure=dict(type='str'),
            failed_step=dict(type='str'),
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
            login_password=dict(type='str', no_log=True),
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
            start_scripts=dict(type='list', elements='dict', default=[], options=dict(
                dest=dict(type='str', required=True),
                program=dict(type='str', required=True),
                args=dict(type='list', elements='str', default=[]),
            )),
            start_script_interpreter=dict(type='str'),
            product=dict(type='str', default=''),
            migrate_command_phase=dict(type='str', choices=list(MIGRATE_PHASES), default='offline'),
            backup_after=dict(type='dict'),
            flow=dict(type='dict', options=dict(
                kind=dict(type='str', choices=['major', 'minor']),
                from_version=dict(type='str'),
                major_blocks=dict(type='int', default=3),
                major_only_offline=dict(type='bool', default=False),
                command_timeout=dict(type='int', default=60),
                tasks=dict(type='dict', options=dict(
                    list=dict(type='list', elements='str'),
                    stop=dict(type='list', elements='str'),
                    start=dict(type='list', elements='str'),
                    running=dict(type='str', default=r'\brunning\b'),
                    timeout=dict(type='int', default=600))),
                warning=dict(type='dict', options=dict(
                    argv=dict(type='list', elements='str'),
                    minutes=dict(type='int', default=8),
                    points=dict(type='list', elements='int', default=[5, 2, 1]),
                    seconds_per_minute=dict(type='float', default=60),
                    text=dict(type='str', default='Update to {version}: the database is locked in {minutes} min.'))),
                lock=dict(type='dict', options=dict(
                    lock=dict(type='list', elements='str'),
                    unlock=dict(type='list', elements='str'))),
                updater=dict(type='dict', options=dict(
                    argv=dict(type='list', elements='str'),
                    log=dict(type='str'),
                    progress=dict(type='str', default=r'\bINFO\b'),
                    error=dict(type='str', default=r'\bERROR\b'),
                    stall_timeout=dict(type='int', default=300),
                    timeout=dict(type='int', default=3600))),
                relogin_message=dict(type='str'),
                failed_message=dict(type='str'),
            )),
        ),
        supports_check_mode=True,
    )
    share_login_password(module)
    errors = check_problems(module.params['checks'])
    try:
        errors.extend(validate_steps(module))
    except StepFailed as exc:
        errors.append(exc.msg)
    if errors:
        module.fail_json(msg='invalid input, nothing was stopped: ' + '; '.join(errors))
    engine = Cutover(module)
    if module.params['op'] == 'rollback':
        engine.rollback()
    engine.run()


if __name__ == '__main__':
    main()
