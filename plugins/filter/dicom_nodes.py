# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The filters dicom_nodes (the distinct DICOM nodes of many hosts' checks, to echo each once per run) and
dicom_answers (each host's own nodes' answers, from that one probe)."""

from __future__ import annotations

import json

from ansible.errors import AnsibleFilterError

from ansible_collections.clinops.upgrade.plugins.plugin_utils.plain import plain

# The keys of a health check that are not dicom_echo's peer options.
_NOT_PEER_KEYS = ('name', 'type')


def _peer(check, calling_aet, port, called_aet):
    """One check as dicom_echo's peer, with the defaults filled in (so that equal nodes compare equal)."""
    if not isinstance(check, dict) or not check.get('host'):
        raise AnsibleFilterError('a DICOM check needs a host: %r' % (check,))
    peer = dict((key, value) for key, value in check.items() if key not in _NOT_PEER_KEYS and value is not None)
    try:
        peer['port'] = int(peer.get('port', port) if peer.get('port', '') != '' else port)
    except (TypeError, ValueError):
        raise AnsibleFilterError('the DICOM check of %s has a port that is not a number: %r' % (peer['host'], peer.get('port')))
    peer['host'] = str(peer['host'])
    peer['called_aet'] = str(peer.get('called_aet') or called_aet)
    peer['calling_aet'] = str(peer.get('calling_aet') or calling_aet)
    return peer


def _key(peer):
    return json.dumps(peer, sort_keys=True, default=str)


def _checks(value):
    """A host's checks, or a list of hosts' lists of checks, as one flat list of the dicom ones."""
    flat = []
    for item in plain(value) or []:
        if isinstance(item, list):
            flat.extend(item)
        else:
            flat.append(item)
    return [check for check in flat if isinstance(check, dict) and check.get('type', 'dicom') == 'dicom']


def dicom_nodes(checks, calling_aet='CLINOPS_UPG', port=104, called_aet='ANY-SCP'):
    """The distinct nodes (host, port, called and calling AE, TLS and timeouts) of the DICOM checks, in first-seen order."""
    nodes, seen = [], set()
    for check in _checks(checks):
        peer = _peer(check, calling_aet, port, called_aet)
        key = _key(peer)
        if key not in seen:
            seen.add(key)
            nodes.append(peer)
    return nodes


def dicom_answers(checks, nodes, results, calling_aet='CLINOPS_UPG', port=104, called_aet='ANY-SCP'):
    """The answer (dicom_echo's result) for each of a host's DICOM checks, from a probe of ``nodes`` (dicom_nodes).

    A node that the probe did not cover answers ``outcome: not_probed``, never success.
    """
    nodes, results = plain(nodes) or [], plain(results) or []
    by_key = dict((_key(node), result) for node, result in zip(nodes, results))
    answers = []
    for check in _checks(checks):
        peer = _peer(check, calling_aet, port, called_aet)
        answers.append(by_key.get(_key(peer)) or {
            'host': peer['host'], 'port': peer['port'], 'called_aet': peer['called_aet'],
            'calling_aet': peer['calling_aet'], 'outcome': 'not_probed',
            'reason': 'the run has no C-ECHO answer for this node'})
    return answers


class FilterModule:
    """The DICOM node filters of clinops.upgrade."""

    def filters(self):
        return {'dicom_nodes': dicom_nodes, 'dicom_answers': dicom_answers}
