#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: release_pick
short_description: Pick the release to install from a release source's channel (stable, or test by hand only)
version_added: 0.1.0
description:
  - Reads the listing of a release source - a folder on the host, or an C(https://) or C(file://) URL - that says which
    releases each channel holds, as JSON with the key C(channels) - for each channel name a list of objects with
    C(version) and C(file) (the release's file name in the source).
  - Returns the newest release of O(channel) (versions compared block by block, as numbers), or O(version) when one
    is asked for - it must be on that channel.
  - A release of the V(test) channel is only picked by a run started by hand (O(by_hand=true)); a scheduled run is
    refused, before anything is touched.
author:
  - clinops.upgrade contributors (@clinops)
extends_documentation_fragment:
  - clinops.upgrade.attributes
attributes:
  check_mode:
    support: full
    details: Reads only; the same answer as without check mode.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  source:
    description: The release source - a folder on the host, or an C(https://) or C(file://) URL of that folder.
    type: str
    required: true
  listing:
    description: The listing's file name in O(source).
    type: str
    default: listing.json
  channel:
    description: The channel to install from.
    type: str
    default: stable
    choices: [stable, test]
  version:
    description: The version asked for. Omitted - the newest release of O(channel).
    type: str
  by_hand:
    description: The run was started by hand (needed for the V(test) channel). A scheduled run leaves it V(false).
    type: bool
    default: false
  validate_certs:
    description: Check the server's certificate for an C(https://) source.
    type: bool
    default: true
seealso:
  - module: clinops.upgrade.upgrade_cutover
"""

EXAMPLES = r"""
- name: The newest stable release (a scheduled run)
  clinops.upgrade.release_pick:
    source: /srv/ksamu/releases
  register: release

- name: A test release, by hand
  clinops.upgrade.release_pick:
    source: https://updates.example.org/ksamu
    channel: test
    by_hand: true
"""

RETURN = r"""
version:
  description: The release picked.
  returned: success
  type: str
  sample: 6.0.51.22966
file:
  description: Its file name in the release source.
  returned: success
  type: str
  sample: ksamu-6.0.51.22966.tar.gz
channel:
  description: The channel it came from.
  returned: success
  type: str
  sample: stable
url:
  description: Where the release is (O(source) and RV(file)).
  returned: success
  type: str
available:
  description: The versions on O(channel), oldest first.
  returned: success
  type: list
  elements: str
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_text
from ansible.module_utils.urls import fetch_url
from ansible_collections.clinops.upgrade.plugins.module_utils.release_flow import CHANNELS, ReleaseError, blocks, pick_release, read_listing


def read_source(module, source, listing):
    if source.startswith(('https://', 'http://', 'file://')):
        response, info = fetch_url(module, source.rstrip('/') + '/' + listing, timeout=30)
        if response is None or info.get('status') not in (200, None):
            module.fail_json(msg='cannot read the release listing %s/%s: %s' % (source.rstrip('/'), listing, info.get('msg')))
        return to_text(response.read(), errors='surrogate_or_strict')
    path = os.path.join(source, listing)
    try:
        with open(path, encoding='utf-8') as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        module.fail_json(msg='cannot read the release listing %s: %s' % (path, exc))
    return None


def main():
    module = AnsibleModule(
        argument_spec=dict(
            source=dict(type='str', required=True),
            listing=dict(type='str', default='listing.json'),
            channel=dict(type='str', default='stable', choices=list(CHANNELS)),
            version=dict(type='str'),
            by_hand=dict(type='bool', default=False),
            validate_certs=dict(type='bool', default=True),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if '/' in p['listing'] or p['listing'] in ('', '.', '..'):
        module.fail_json(msg='listing must be a file name, not %r' % p['listing'])
    try:
        channels = read_listing(read_source(module, p['source'], p['listing']))
        picked = pick_release(channels, p['channel'], p['version'] or None, p['by_hand'])
    except (ReleaseError, ValueError) as exc:
        module.fail_json(msg=str(exc))
    available = sorted((r['version'] for r in channels.get(p['channel'], [])), key=blocks)
    module.exit_json(changed=False, url=p['source'].rstrip('/') + '/' + picked['file'], available=available, **picked)


if __name__ == '__main__':
    main()
