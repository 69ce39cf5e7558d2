# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The options of upgrade_cutover, shared by the module (POSIX hosts) and its action plugin (Windows hosts)."""

from __future__ import annotations

from ansible_collections.clinops.upgrade.plugins.module_utils.cutover import MIGRATE_PHASES, STEPS, DOWNTIME_STEPS
from ansible_collections.clinops.upgrade.plugins.module_utils.sessions import argument_spec as users_argument_spec


def argument_spec():
    return dict(
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
        installer=dict(type='dict'),
        queues=dict(type='dict'),
        web_sessions=dict(type='dict', options=dict(
            url=dict(type='str', required=True),
            key=dict(type='str', no_log=False),
            timeout=dict(type='int', default=5),
            validate_certs=dict(type='bool', default=True),
        )),
        post_jobs=dict(type='list', elements='dict', default=[], options=dict(
            name=dict(type='str', required=True),
            argv=dict(type='list', elements='str', required=True),
            log=dict(type='str'),
            progress_re=dict(type='str'),
            error_re=dict(type='str'),
            timeout=dict(type='int', default=3600),
            stall_timeout=dict(type='int'),
        )),
        artifact_source=dict(type='dict'),
        artifact_url_username=dict(type='str'),
        artifact_url_password=dict(type='str', no_log=True),
        backup_when=dict(type='str', choices=['offline', 'online'], default='offline'),
        users=dict(type='dict', options=users_argument_spec()),
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
    )
