#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: prefs_migrate
short_description: Carry a site's settings from the old installation into the new one
version_added: 0.1.0
description:
  - Copies, keeps or merges configuration files from the old installation root O(src) into the new
    installation root O(dest), as the vendors' upgrade procedures ask (PMOD imports the properties of the
    old installation; ConAktiv carries C(Server Database/Preferences), C(cert.pem), C(key.pem) and
    C(Server Database/Resources/Hunspell) into the new server folder).
  - A merge keeps every value the site changed, takes the keys the new release added with their new
    defaults, and reports the keys the new release dropped. A value counts as changed when it differs
    from the old release's pristine file in O(defaults); without O(defaults) every old value counts as
    changed. A key the old file has and the new one lacks is reported in RV(dropped_keys), unless
    O(defaults) shows that the site added it, then it is carried over.
  - Comments, order, encoding and line endings of the new file are kept. Java properties are read as
    ISO-8859-1 with C(\uXXXX) escapes; only the value part of a changed line is rewritten.
  - Everything is checked before anything is written (paths, symlinks, special files, required items,
    every file to merge is parsed).
  - No path leaves its root. Every path is checked component by component in O(src), O(dest), O(defaults)
    and O(backup_dir); when any component is a symlink (on Windows also a junction) whose target resolves
    outside its root, the task fails naming it and nothing is written, in check mode too. A symlink in O(src)
    that stays inside is recreated as a symlink in O(dest), never followed (an absolute one is made relative);
    files are read and written with C(O_NOFOLLOW) from the checked folders, so a folder swapped for a symlink
    meanwhile makes the task fail instead of being followed. Files are staged as temporary files beside their targets, verified
    by sha256 against their source, and renamed into place at the end; a failure part-way restores
    O(dest) as it was.
  - Every file of O(dest) that is replaced is kept first in O(backup_dir), with a manifest
    C(.prefs_migrate-manifest.json) listing the files replaced and created, so the step can be undone.
  - A second run changes nothing. Unchanged copies are recognised by size and modification time before
    any hashing, so a rerun with nothing to do is cheap.
  - On Windows hosts the action plugin of the same name fetches the files, merges them on the controller
    with the same code, and moves files with M(ansible.windows.win_copy) and M(ansible.windows.win_file).
author:
  - clinops.upgrade developers (@clinops)
extends_documentation_fragment:
  - clinops.upgrade.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details:
      - One before/after entry per file. Values of keys that look like passwords, secrets, tokens or
        keys are masked, private key files are never shown, and binary or large files are summarised.
  platform:
    platforms: [posix, windows]
    details:
      - On Windows the action plugin does the work through ansible.windows modules.
options:
  src:
    description:
      - Root of the old installation, for example C(/opt/ConAktiv Server_old0001) or C(C:\PMOD4.4).
      - Must exist; may neither contain O(dest) nor lie inside it.
      - A path with a C(..) component is refused (so are O(dest), O(defaults) and O(backup_dir) with one).
    type: path
    required: true
  dest:
    description:
      - Root of the new installation. Must exist (the installer has run).
      - A symlink or junction in it on the way to a file that leads outside it is refused.
    type: path
    required: true
  items:
    description:
      - What to carry over. Each file is handled by the B(last) item whose path matches it, so a broad
        item can be followed by narrower exceptions.
      - An item that matches nothing is reported in RV(missing), or fails the task when O(items[].required).
    type: list
    elements: dict
    required: true
    suboptions:
      path:
        description:
          - A file or folder relative to O(src) and O(dest), with C(/) separators; a folder stands for
            everything below it.
          - Wildcards C(*), C(?) and C([...]) match inside one path segment, C(**) any number of segments.
          - Absolute paths and C(..) are refused; so are special files and symlinks (or junctions) leading outside
            their root, whichever component of the path they are.
          - A symlink inside the root that points inside is carried as a symlink, not followed; a linked folder
            is not descended. A V(merge) onto an existing file reads the old values through such a link, and a path
            written through an inside folder link (C(conf/*.properties) with C(conf -> settings)) is read through it.
        type: str
        required: true
      mode:
        description:
          - V(copy) takes the old file. V(keep) leaves the new one as it is. V(merge) merges keys into the
            new file (when the new release has no such file, the old one is copied).
        type: str
        default: copy
        choices: [copy, keep, merge]
      format:
        description:
          - The file format for O(items[].mode=merge).
          - V(auto) picks it from the extension (C(.properties), C(.prefs) properties; C(.ini), C(.cfg),
            C(.conf) ini; C(.json) json; C(.xml), C(.config), C(.plist) xml); another extension fails.
          - V(json) and V(xml) keys are paths such as C(server/port) and C(map/entry[@key='cache']/@value).
        type: str
        default: auto
        choices: [auto, properties, ini, json, xml]
      required:
        description:
          - Fail, before anything is written, when the item matches nothing in O(src).
        type: bool
        default: false
  defaults:
    description:
      - A folder with the old release's pristine files, laid out like O(src), used to tell a value the
        site customised from an old default. An old default is not carried over, so the new release's
        default wins.
      - A file reached through a symlink leading outside this folder is refused.
    type: path
  backup_dir:
    description:
      - Where the files of O(dest) that get replaced are kept, laid out like O(dest).
      - Default a new folder beside O(dest) named C(<dest>.prefs_backup-<YYYYmmddTHHMMSS>), created only
        when something changes.
      - May not lie inside O(src) or O(dest). When it exists, a symlink in it leading outside it is refused.
    type: path
notes:
  - INI keys and sections are compared case-insensitively; a duplicate key or section is refused as ambiguous.
  - JSON files that change are written again with the indent, separators, line ending and encoding
    detected from the new file; JSON has no comments to keep.
  - XML is edited in place at the byte positions the parser reports; UTF-16 and multi-byte encodings
    other than UTF-8 are refused (use V(copy) or V(keep)).
  - Files are not fsynced one by one; the rename at the end is atomic per file.
  - Unchanged copies are recognised by equal size and modification time, as rsync does; files with equal
    size and different times are compared by sha256.
  - Copied files take the mode, owner and times of the old file (like C(cp -a)); merged files keep the
    mode and owner of the new file. Private keys are staged with mode 0600 and keep their mode.
  - On Windows, files are written with M(ansible.windows.win_copy) and take the ACLs of their folder;
    each file that will be replaced is copied into O(backup_dir) first and copied back if a later step
    fails (there is no rename into place over WinRM). Folder links inside a root are not descended there.
    The Windows path is tested by unit tests that replace the ansible.windows module calls with a fake
    host, since PowerShell cannot run in this collection's CI.
seealso:
  - module: ansible.windows.win_copy
"""

EXAMPLES = r"""
- name: Carry ConAktiv's preferences, certificates and dictionaries into the new server folder
  clinops.upgrade.prefs_migrate:
    src: /srv/ConAktiv Server_old0001
    dest: /srv/ConAktiv Server
    items:
      - path: Server Database/Preferences
        mode: copy
        required: true
      - path: Server Database/cert.pem
      - path: Server Database/key.pem
      - path: Server Database/Resources/Hunspell

- name: Import PMOD's properties from the old installation, keeping site changes only
  clinops.upgrade.prefs_migrate:
    src: C:\PMOD4.3
    dest: C:\PMOD4.4
    defaults: C:\clinops\pristine\PMOD4.3
    items:
      - path: properties/**/*.properties
        mode: merge
        required: true
      - path: properties/license.properties
        mode: keep
  register: pmod_props

- name: Show what was carried over
  ansible.builtin.debug:
    msg: "{{ pmod_props.merged | map(attribute='keys') | list }}; dropped: {{ pmod_props.dropped_keys }}"
"""

RETURN = r"""
copied:
  description: Files (relative to O(dest)) replaced or created from O(src), or whose mode and owner were set from it.
  returned: always
  type: list
  elements: str
  sample: [Server Database/cert.pem, Server Database/key.pem]
merged:
  description: One entry per merged file.
  returned: always
  type: list
  elements: dict
  contains:
    path:
      description: The file, relative to O(dest).
      type: str
    format:
      description: The format it was merged as.
      type: str
    keys:
      description: The keys whose value was taken from the old file (customised or added by the site).
      type: list
      elements: str
    added:
      description: The keys the new release added, kept with their new defaults.
      type: list
      elements: str
    changed:
      description: Whether the new file had to be changed.
      type: bool
  sample: [{path: properties/server.properties, format: properties, keys: [server.port], added: [cache.mode], changed: true}]
kept:
  description: Files left as the new release has them (O(items[].mode=keep)).
  returned: always
  type: list
  elements: str
dropped_keys:
  description: Per merged file, the keys of the old file the new release no longer has (not written).
  returned: always
  type: dict
  sample: {properties/server.properties: [legacy.cache]}
missing:
  description: Item paths that matched nothing in O(src).
  returned: always
  type: list
  elements: str
backup_dir:
  description: The folder holding the replaced files and the manifest C(.prefs_migrate-manifest.json); null when nothing changed.
  returned: always
  type: str
  sample: /srv/ConAktiv Server.prefs_backup-20250101T120000
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.clinops.upgrade.plugins.module_utils.prefs.migration import module_kwargs, run


def main():
    run(AnsibleModule(**module_kwargs()))


if __name__ == '__main__':
    main()
