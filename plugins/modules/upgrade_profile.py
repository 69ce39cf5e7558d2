#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# This file documents the action plugin plugins/action/upgrade_profile.py, which runs on the controller only.

from __future__ import annotations

DOCUMENTATION = r"""
---
module: upgrade_profile
short_description: Check a product profile against the collection's schema before any host is touched
version_added: 0.1.0
description:
  - >-
    Reads a product profile (a shipped one by O(name), or O(file)), merges the site's O(overrides) into it and checks
    the result against C(profiles/schema.json) of the collection. Every problem is reported at once, each with its
    path in the profile, for example C(services[2].backend: 'sytemd' is not one of auto, systemd, ...) or
    C(database.backup_befor: unknown key; did you mean backup_before?).
  - Overrides merge like this - mappings deep-merged; lists of named things (items with C(name), such as C(services) and
    C(health_checks); with C(path), such as preference items; with C(dest), such as C(start_scripts)) merged entry by
    entry, new entries appended; an entry with C(state=absent) removes the entry of that name; other lists replaced.
  - Values that are Jinja templates are checked for their keys here and for their type by the module that receives them.
  - A profile whose C(status) is C(draft) is refused unless O(accept_draft=true).
  - Runs on the controller only and never contacts the host; the role C(clinops.upgrade.upgrade) calls it before it
    loads the profile.
  - Returns the profile's name and status, never its values (overrides arrive templated and may carry secrets).
author:
  - clinops.upgrade contributors (@clinops)
requirements:
  - jsonschema (Python library, on the controller)
extends_documentation_fragment:
  - clinops.upgrade.attributes
attributes:
  check_mode:
    support: full
    details: Reads and checks; changes nothing, in check mode or not.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  name:
    description:
      - Name of a profile shipped in the collection's C(profiles/) folder.
    type: str
    default: pmod
  file:
    description:
      - Path of a profile file of your own on the controller; wins over O(name). A relative path is looked up like
        C(include_vars) does.
    type: str
    default: ""
  overrides:
    description:
      - Merged over the profile before the check (see the description for how lists merge).
    type: dict
    default: {}
  accept_draft:
    description:
      - Run a profile whose C(status) is C(draft).
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Check the site's profile before anything else
  clinops.upgrade.upgrade_profile:
    file: /etc/clinops/archive.yml
    overrides:
      services:
        - name: archive-web
          state: absent
      database:
        backup_keep: 7

- name: Run a draft profile on a test site
  clinops.upgrade.upgrade_profile:
    name: ksamu
    accept_draft: true
"""

RETURN = r"""
path:
  description: The profile file that was read.
  returned: always
  type: str
  sample: /usr/share/ansible/collections/ansible_collections/clinops/upgrade/profiles/pmod.yml
profile_name:
  description: The profile's C(name).
  returned: success
  type: str
  sample: pmod
profile_status:
  description: The profile's C(status).
  returned: success
  type: str
  sample: complete
product:
  description: The profile's C(product).
  returned: success
  type: str
  sample: PMOD
schema_keys:
  description: How many keys the schema defines.
  returned: success
  type: int
  sample: 95
problems:
  description: Every problem found, each the path in the profile, a colon and what is wrong.
  returned: failure
  type: list
  elements: str
  sample: ["database.backup_befor: unknown key; did you mean backup_before?"]
"""
