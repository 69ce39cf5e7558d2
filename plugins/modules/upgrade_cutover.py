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
  - Before the stop - V(stage) (download O(artifact_source) into O(staging_dir) when given, unpack the release
    there, and the old release's pristine preferences),
    V(configure) (write the O(start_scripts) into the staged release, mode 0755, each through a temporary file renamed
    into place), V(migrate_pre) (as M(clinops.upgrade.schema_update) with C(phase=pre), the migrations read from the
    staged release), V(queues) (wait until the product's queues are empty, O(queues); fails with the counts left,
    nothing stopped).
  - V(backup_online) (the O(backup) taken while the server still runs, with O(backup_when=online)), V(users) (tell the
    logged-on users, wait for them, as O(users) says), both before the stop.
  - The downtime - V(stop) (drain and stop the services in the vendor's order, as
    M(clinops.upgrade.service_stop_ordered)), V(backup) (as M(clinops.upgrade.db_backup) with O(backup)),
    V(swap) (move the installation aside to C(<install_root><old_suffix>NNNN) and the staged release into its place),
    V(install) (with O(installer), the installer layout - the vendor's installer run unattended, its log followed into
    the journal, the result judged from the installed version, the schema version, the database's identity and row
    counts; V(swap) and V(prefs) are then skipped),
    V(prefs) (as M(clinops.upgrade.prefs_migrate) from the old installation into the new one), V(migrate_offline) (as
    M(clinops.upgrade.schema_update) with C(phase=offline)), V(start) (the services that were running, in reverse
    order), V(verify) (the health checks until they pass or O(verify_wait) runs out), V(restart_after_verify) (the
    services O(restart_after_verify) names, restarted).
  - After the verified start - V(migrate_post) (C(phase=post)), V(post_jobs) (O(post_jobs), their progress journaled; a
    failure is reported as a warning and in the step's data, not rolled back), V(backup_after) (as M(clinops.upgrade.db_backup) with
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
    pre-upgrade backup (O(backup)) when V(install), V(migrate_offline) or V(migrate_post) touched the schema (with
    O(installer), then runs the prior version's installer), starts the services
    that were running and runs the O(checks) against the old version. It removes O(staging_dir), closes the attempt
    (V(rolled_back), or V(failed) when nothing had been stopped) and releases the upgrade lock, and says what it
    restored (RV(restored), RV(message)). It refuses while the lock is held by another run.
  - POSIX and Windows hosts. The steps reach the host through one small interface (module_utils C(host)). On a Windows
    host (connection C(winrm)/C(psrp), a PowerShell shell, C(ansible_os_family=Windows), or the variable
    C(clinops_upgrade_host_os=windows); C(posix) forces the module) the action plugin runs the same engine on the
    controller and carries out each operation with ansible.windows modules (M(ansible.windows.win_stat),
    M(ansible.windows.slurp), M(ansible.windows.win_find), M(ansible.windows.win_file),
    M(ansible.windows.win_powershell), M(ansible.windows.win_service), M(ansible.windows.win_service_info),
    M(ansible.windows.win_command), M(ansible.windows.win_wait_for), M(ansible.windows.win_copy)); the host needs no
    Python. There the release is a zip, the V(backup), V(backup_after) and V(migrate_*) steps are refused before
    anything stops, and C(tcp) and C(dicom) checks run from the controller. See C(docs/WINDOWS.md).
  - The roles still refuse Windows hosts in their first task (their preflight and journal tasks are POSIX modules).
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
    platforms: [posix, windows]
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
    choices: [tasks_stop, stage, configure, migrate_pre, queues, backup_online, users, warn, lock, stop, backup, swap, install,
              prefs, migrate_offline, update, start, unlock, verify, restart_after_verify, relogin, migrate_post, post_jobs,
              backup_after, cleanup, tasks_start]
    default: [stop, backup, swap, install, prefs, migrate_offline, start, verify, restart_after_verify]
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
  artifact_source:
    description:
      - Where V(stage) downloads the release from, before anything stops, instead of O(artifact) - the options of
        M(clinops.upgrade.artifact_fetch) without C(dest) and the credentials (C(url), C(checksum) or C(checksum_url),
        C(name), C(validate_certs), C(ca_path), C(timeout), C(resume)), validated against its argument spec before the
        first step.
      - The release is downloaded into O(staging_dir) (resuming a partial download an earlier run left there), checked by
        its sha256 and unpacked there. A failed or wrong download fails V(stage), naming the URL and what was wrong;
        nothing has been stopped then.
    type: dict
  artifact_url_username:
    description: The user for the server of O(artifact_source).
    type: str
  artifact_url_password:
    description: The password for the server of O(artifact_source); never printed, journaled or returned.
    type: str
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
  backup_when:
    description:
      - V(offline) takes the O(backup) in the step V(backup), after the stop.
      - V(online) takes it in the step V(backup_online), before the stop, while the server still runs (ConAktiv's vendor
        backs up first, then stops); the rollback restores it all the same.
    type: str
    choices: [offline, online]
    default: offline
  users:
    description:
      - The step V(users), before the stop, for products whose server keeps user sessions - show O(users.text) on the
        server console and in every client session, then wait until nobody is logged on or O(users.max_wait) passed,
        listing who still is. Not given - V(users) is skipped.
    type: dict
    suboptions:
      list_command:
        description: The command (argv) that lists the logged-on users, one a line (run in O(install_root)).
        type: list
        elements: str
        required: true
      message_command:
        description: The command (argv) that shows a message on the server and every session; an argument containing C({message}) gets the text.
        type: list
        elements: str
      text:
        description: The message; C({version}) becomes O(target), C({minutes}) the minutes of O(users.max_wait).
        type: str
        default: ''
      max_wait:
        description: Seconds to wait for the users to log off.
        type: int
        default: 900
      interval:
        description: Seconds between two looks at who is logged on.
        type: int
        default: 5
      on_timeout:
        description: V(proceed) stops the server when the wait time passed (the vendor's way); V(fail) ends the run, nothing stopped.
        type: str
        choices: [proceed, fail]
        default: proceed
      command_timeout:
        description: Seconds each of the two commands may take.
        type: int
        default: 60
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
  installer:
    description:
      - The installer layout. Given - the V(install) step runs the vendor's installer instead of V(swap) and V(prefs),
        and O(op=rollback), after restoring the database, runs the prior version's installer.
      - C(args) (list, required) the installer's command line; C(rollback_args) (list, default C(args)) the prior
        installer's; placeholders C({staged}) (the unpacked installer), C({install_root}), C({log}), C({version}),
        C({artifact}).
      - C(log) the installer's log file to follow (default C(installer-<kind>-<target>-<attempt>.log) beside
        O(journal)); C(progress_re), C(error_re) (regular expressions on its lines), C(journal_re) (the lines journaled;
        default every line), C(timeout) (default 3600) and C(stall_timeout) (seconds without a new line) end it.
      - C(connection) (the database options of M(clinops.upgrade.db_backup)); C(schema_version_query) and
        C(schema_version) (default C({version})) judge the schema; C(check_database) (default true) compares the
        database's identity and every table's row count before and after; C(may_lose_rows) lists the tables that may
        lose rows (the release notes').
      - C(prior_artifact), C(prior_top_dir) the prior version's installer archive and its top folder, for the rollback.
    type: dict
  queues:
    description:
      - For the V(queues) step. C(connection) (the database options), C(wait) (a list of C(name), C(query) - each query
        counts a queue's entries; all must reach 0), C(advice) (the same, reported only), C(max_wait) (seconds, default
        3600), C(interval) (seconds between polls, default 2). The counts are journaled as they change.
    type: dict
  web_sessions:
    description:
      - Before the V(stop) step, ask the web interface how many sessions are open; the number is journaled and returned
        in the step's data as C(web_sessions_open). No answer is a warning, not a failure.
    type: dict
    suboptions:
      url:
        description: The status URL (http or https) that answers the number of open sessions.
        type: str
        required: true
      key:
        description: A dotted path to the number in its JSON answer; omitted - the answer is the number itself.
        type: str
      timeout:
        description: Seconds to wait for the answer.
        type: int
        default: 5
      validate_certs:
        description: Check the server's certificate (https).
        type: bool
        default: true
  post_jobs:
    description:
      - For the V(post_jobs) step, run after the verified start, outside the downtime, each followed while it runs.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: What the job does (the journal and the report name it).
        type: str
        required: true
      argv:
        description: The command line, run in O(install_root); C({install_root}) and C({version}) are replaced.
        type: list
        elements: str
        required: true
      log:
        description: A log file the job writes, followed; omitted - its output is followed.
        type: str
      progress_re:
        description: A regular expression on its lines; named groups C(done) and C(total) give the progress.
        type: str
      error_re:
        description: A regular expression on its lines that marks an error (the job then counts as failed).
        type: str
      timeout:
        description: Seconds the job may run.
        type: int
        default: 3600
      stall_timeout:
        description: Seconds without a new line after which the job is ended.
        type: int
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
  description:
    - The facts of the attempt so far (C(previously_running), C(backup_path), C(old_dir), ...).
    - C(checks) (after the V(verify) step) lists each health check's answer, as the journal records it for the report -
      C(name), C(type), C(answer) (the line of the command's output that matched C(expect), else its first line; the
      C-ECHO status with the called AE title, address and latency; the accepted TCP connection; secrets masked, at most
      300 characters), C(seconds) (the answering attempt), C(attempts) and C(waited_s) (from the first attempt).
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
from ansible_collections.clinops.upgrade.plugins.module_utils.cutover import Cutover, StepFailed, check_problems, share_login_password, validate_steps
from ansible_collections.clinops.upgrade.plugins.module_utils.cutover_spec import argument_spec


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(),
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
