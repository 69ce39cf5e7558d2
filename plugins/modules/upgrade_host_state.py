#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: upgrade_host_state
short_description: Read in one pass everything preflight needs of a host (version, journal, lock, artifact, space)
version_added: 0.2.0
description:
  - Reads the installed version file, the upgrade journal and lock (as M(clinops.upgrade.upgrade_journal) reads them),
    and - when the host has work to do (an open attempt, or an installed version older than O(target)), or O(always) -
    the release artifact with its size and sha256, the artifact's checksum file, the prior version's installer, the
    database file and the free space of the file systems named, in one module execution.
  - Decides nothing and changes nothing; the roles judge what it read, on the controller.
  - The same Python runs on a Windows host from the controller, through the collection's action plugin.
author:
  - clinops.upgrade contributors (@clinops)
extends_documentation_fragment:
  - clinops.upgrade.attributes
attributes:
  check_mode:
    support: full
    details: Only reads; the same in check mode.
  diff_mode:
    support: none
  platform:
    platforms: posix, windows
options:
  version_file:
    description: The installation's version file; its first line is the installed version.
    type: path
    required: true
  journal:
    description: The upgrade journal (JSON lines). A missing journal has no entries.
    type: path
    required: true
  target:
    description: The version this upgrade brings the host to. Attempts belong to one target version.
    type: str
    required: true
  run_id:
    description: Identifier of the playbook run; a lock this run holds is available to it.
    type: str
  stale_after:
    description: Seconds after the lock holder's last write when its lock counts as abandoned.
    type: int
    default: 3600
  lock_file:
    description: The lock file. Default - C(upgrade.lock) beside O(journal).
    type: path
  artifact:
    description: The release artifact; its size and sha256 are returned.
    type: path
  checksum_file:
    description: The artifact's checksum file; its first word is the expected sha256.
    type: path
  prior_installer:
    description:
      - The prior version's installer. C({version}) in it stands for the version the upgrade starts from
        (RV(from_version)).
    type: str
  database_file:
    description: The database file; its size is returned.
    type: path
  space_paths:
    description:
      - Paths whose file systems must hold the backup and the staged release; a path not there yet is measured on
        its nearest existing parent folder.
    type: list
    elements: path
    default: []
  always:
    description: Read the artifact, installer, database and free space also when the host has nothing to do.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Read the host's state for preflight, in one module execution
  clinops.upgrade.upgrade_host_state:
    version_file: /opt/pmod/app/version.txt
    journal: /opt/pmod/.clinops-upgrade/journal.jsonl
    target: 4.5.0
    run_id: "{{ upgrade_run_id }}"
    artifact: /srv/releases/pmod-4.5.0.tar.gz
    checksum_file: /srv/releases/pmod-4.5.0.tar.gz.sha256
    prior_installer: /srv/releases/pmod-{version}.tar.gz
    database_file: /opt/pmod/data/pmod.fdb
    space_paths: [/opt/pmod, /var/backups]
  register: host_state
"""

RETURN = r"""
installed_version:
  description: The first line of O(version_file), trimmed; empty when it is missing.
  returned: always
  type: str
version_file:
  description: O(version_file) and whether it could be read.
  returned: always
  type: dict
  contains:
    path: {description: The file, type: str}
    exists: {description: Whether it could be read, type: bool}
from_version:
  description: The version the upgrade starts from (the open attempt's, else the installed one).
  returned: always
  type: str
needed:
  description: Whether the host has work to do (an open attempt, or an installed version older than O(target)).
  returned: always
  type: bool
journal:
  description: The journal as M(clinops.upgrade.upgrade_journal) reads it.
  returned: always
  type: dict
  contains:
    entries: {description: The entries of the journal (the last 1000), type: list, elements: dict}
    attempt:
      description: The last attempt for O(target) - C(number), C(open), C(result), C(done), C(started_steps), C(data), C(downtime_s), C(entries).
      type: dict
    lock:
      description: The lock as found - C(held), C(holder), C(available), C(reason).
      type: dict
artifact:
  description: O(artifact) with C(exists), C(size) and C(checksum) (sha256).
  returned: when O(artifact) is given and RV(needed) or O(always)
  type: dict
checksum_file:
  description: O(checksum_file) with C(readable), C(expected) (the first word, lower case) and C(msg).
  returned: when O(checksum_file) is given and RV(needed) or O(always)
  type: dict
prior_installer:
  description: The prior installer's path (C({version}) replaced) and whether it C(exists).
  returned: when O(prior_installer) is given and RV(needed) or O(always)
  type: dict
database_file:
  description: O(database_file) with C(exists) and C(size).
  returned: when O(database_file) is given and RV(needed) or O(always)
  type: dict
free_space:
  description: Per path of O(space_paths), C(bytes_free) and C(mb_free).
  returned: when RV(needed) or O(always)
  type: list
  elements: dict
free_mb_min:
  description: The least free space of O(space_paths) in MB (null without O(space_paths)).
  returned: when RV(needed) or O(always)
  type: float
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.clinops.upgrade.plugins.module_utils.host_state import (
    PosixReader, argument_spec, problems, read_state)


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    found = problems(module.params)
    if found:
        module.fail_json(msg='invalid input, nothing was read: ' + '; '.join(found))
    try:
        result = read_state(module.params, PosixReader())
    except (ValueError, OSError) as exc:
        module.fail_json(msg='cannot read the host state: %s' % exc)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
