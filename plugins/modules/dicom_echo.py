#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: dicom_echo
short_description: Verify that DICOM nodes answer a C-ECHO
version_added: 0.1.0
author:
  - clinops.upgrade contributors (@clinops)
description:
  - Opens a DICOM association to each peer, sends a C-ECHO (Verification SOP Class, C(1.2.840.10008.1.1)),
    checks the status in the answer and releases the association. This is the check that ends every imaging
    upgrade.
  - Unlike C(echoscu), a peer passes only when the association is accepted B(and) the C-ECHO answer carries the
    status C(0x0000). A failure is classified (RV(results[].outcome)) and explained in words
    (RV(results[].reason)), for a rejected association the result, source and diagnostic the peer sent.
  - Several peers (O(peers)) are echoed concurrently, each with its own settings.
  - O(wait) keeps retrying a peer that does not answer yet (a node that has just been restarted);
    O(repeat) sends several echoes per peer and returns latency statistics.
  - The module never changes anything, so it always returns RV(ignore:changed=false). In check mode it still
    sends the echoes, since they are read-only.
  - Input is checked before any network traffic; bad input fails with a message, never a traceback.
extends_documentation_fragment:
  - clinops.upgrade.attributes
attributes:
  check_mode:
    support: full
    details: The C-ECHO is read-only, so check mode performs it like a normal run.
  diff_mode:
    support: none
  platform:
    platforms: posix
requirements:
  - pynetdicom >= 3.0 on the managed node
options:
  host:
    description:
      - Host name or IP address of the single peer to echo.
      - Exactly one of O(host) and O(peers) is required.
    type: str
  port:
    description:
      - TCP port of the peer (1-65535).
      - With O(peers), the port of every entry that does not set its own.
    type: int
    default: 104
  called_aet:
    description:
      - The peer's AE title (Called AE Title), 1 to 16 characters.
      - With O(peers), the default for every entry that does not set its own.
    type: str
    default: ANY-SCP
  calling_aet:
    description:
      - Our AE title (Calling AE Title), 1 to 16 characters. Peers that check the calling AE title reject
        unknown ones.
      - With O(peers), the default for every entry that does not set its own.
    type: str
    default: ECHOSCU
  connect_timeout:
    description:
      - Seconds to wait for the TCP connection and, with O(tls), the TLS handshake.
    type: float
    default: 10
  acse_timeout:
    description:
      - Seconds to wait for the answer to the association request (and to the release request).
    type: float
    default: 30
  dimse_timeout:
    description:
      - Seconds to wait for the C-ECHO response.
    type: float
    default: 30
  max_pdu:
    description:
      - Maximum PDU length we accept, in bytes; V(0) means no limit, otherwise at least V(4096).
    type: int
    default: 16382
  tls:
    description:
      - Use DICOM over TLS. Without it the association is plain TCP.
      - With O(peers), the TLS settings of every entry that does not set its own.
    type: dict
    suboptions:
      ca_file:
        description:
          - PEM file of the certificate authorities that may sign the peer's certificate.
          - When unset and O(tls.verify=true), the system's trusted authorities are used.
        type: path
      cert_file:
        description:
          - PEM file with our client certificate, for peers that require one.
        type: path
      key_file:
        description:
          - PEM file with the private key of O(tls.cert_file), when the certificate file does not hold it.
        type: path
      verify:
        description:
          - Verify the peer's certificate chain and that it was issued for O(host).
          - V(false) still encrypts but accepts any certificate; use it only on trusted networks.
        type: bool
        default: true
      min_version:
        description:
          - Lowest TLS protocol version to accept.
        type: str
        choices: [TLSv1.2, TLSv1.3]
        default: TLSv1.2
  peers:
    description:
      - Several peers, echoed concurrently (up to 32 at a time).
      - Each entry takes the same keys as the task; a key an entry leaves out takes the task-level value.
      - Exactly one of O(host) and O(peers) is required.
    type: list
    elements: dict
    suboptions:
      host:
        description: Host name or IP address of the peer.
        type: str
        required: true
      port:
        description: TCP port of the peer; defaults to O(port).
        type: int
      called_aet:
        description: The peer's AE title; defaults to O(called_aet).
        type: str
      calling_aet:
        description: Our AE title towards this peer; defaults to O(calling_aet).
        type: str
      connect_timeout:
        description: Defaults to O(connect_timeout).
        type: float
      acse_timeout:
        description: Defaults to O(acse_timeout).
        type: float
      dimse_timeout:
        description: Defaults to O(dimse_timeout).
        type: float
      max_pdu:
        description: Defaults to O(max_pdu).
        type: int
      tls:
        description: TLS settings for this peer; defaults to O(tls).
        type: dict
        suboptions:
          ca_file:
            description: PEM file of the certificate authorities that may sign the peer's certificate.
            type: path
          cert_file:
            description: PEM file with our client certificate.
            type: path
          key_file:
            description: PEM file with the private key of the client certificate.
            type: path
          verify:
            description: Verify the peer's certificate chain and host name.
            type: bool
            default: true
          min_version:
            description: Lowest TLS protocol version to accept.
            type: str
            choices: [TLSv1.2, TLSv1.3]
            default: TLSv1.2
  wait:
    description:
      - Seconds to keep retrying a peer that fails, every O(delay) seconds, until it answers with success.
      - Retried are a refused or timed-out connection, an aborted association, a bad answer, and a rejection with
        the result C(rejected-transient) ("try again later", whatever its source and reason, for example
        C(local limit exceeded) when the node's association slots are full, or C(temporary congestion)).
      - A C(rejected-permanent) rejection (an unknown AE title, say) is final at once, since asking again cannot change it.
      - V(0) tries once. Retries stop at the first success; a failure after it (with O(repeat)) is final.
      - RV(results[].attempts) and RV(results[].retried) tell how many tries a peer took and why the retried ones
        failed.
    type: float
    default: 0
  delay:
    description:
      - Seconds between two tries while O(wait) lasts, whatever the failure (a refused connection and a transient
        rejection wait alike).
    type: float
    default: 1
  repeat:
    description:
      - Number of successful echoes to collect per peer, each on its own association, for the
        RV(results[].latency_ms) statistics. The first failure ends the peer's run.
    type: int
    default: 1
  fail_on_error:
    description:
      - Fail the task when any peer does not answer with success.
      - V(false) only reports; look at RV(failed_peers) and RV(results[].outcome).
    type: bool
    default: true
notes:
  - Each echo is a full association (connect, A-ASSOCIATE, C-ECHO, A-RELEASE), like C(echoscu --repeat).
  - With O(wait), every failure but a permanent rejection is retried until the time is up. A node that has just
    been started, or whose association slots are still taken by earlier connections, answers C(rejected-transient)
    (C(local limit exceeded)) for a while; give such checks a few seconds of O(wait).
seealso:
  - name: DICOM PS3.7 Verification Service
    description: The C-ECHO service this module uses.
    link: https://dicom.nema.org/medical/dicom/current/output/chtml/part07/sect_9.3.5.html
  - name: DICOM PS3.8 A-ASSOCIATE-RJ
    description: The rejection results, sources and diagnostics translated in RV(results[].reason).
    link: https://dicom.nema.org/medical/dicom/current/output/chtml/part08/sect_9.3.4.html
"""

EXAMPLES = r"""
- name: Check that the PACS answers after the upgrade
  clinops.upgrade.dicom_echo:
    host: pacs.example.org
    port: 11112
    called_aet: PACS
    calling_aet: UPGRADE

- name: Wait up to five minutes for the archive to come back after its restart
  clinops.upgrade.dicom_echo:
    host: archive.example.org
    port: 4242
    called_aet: ORTHANC
    wait: 300
    delay: 5

- name: Echo every modality worklist node at once, one of them over TLS
  clinops.upgrade.dicom_echo:
    calling_aet: UPGRADE
    port: 104
    peers:
      - host: ct1.example.org
        called_aet: CT1
      - host: mr1.example.org
        called_aet: MR1
      - host: archive.example.org
        port: 2762
        called_aet: ARCHIVE
        tls:
          ca_file: /etc/pki/dicom/ca.pem
          cert_file: /etc/pki/dicom/upgrade.pem
          key_file: /etc/pki/dicom/upgrade.key

- name: Measure latency without failing the play
  clinops.upgrade.dicom_echo:
    host: pacs.example.org
    called_aet: PACS
    repeat: 20
    fail_on_error: false
  register: echo

- name: Show the median latency
  ansible.builtin.debug:
    msg: "{{ echo.results[0].latency_ms.median }} ms, failed: {{ echo.failed_peers }}"
"""

RETURN = r"""
results:
  description: One entry per peer, in the order of O(peers) (one entry for O(host)).
  returned: always
  type: list
  elements: dict
  contains:
    host:
      description: The peer's host.
      type: str
      sample: 127.0.0.1
    port:
      description: The peer's port.
      type: int
      sample: 4242
    called_aet:
      description: The called AE title used.
      type: str
      sample: ORTHANC
    calling_aet:
      description: The calling AE title used.
      type: str
      sample: ECHOSCU
    tls:
      description: Whether the association used TLS.
      type: bool
      sample: false
    outcome:
      description:
        - V(success) the association was accepted and the C-ECHO answered with status C(0x0000).
        - V(refused) no TCP connection could be opened (refused, unreachable, or the name does not resolve).
        - V(timeout) no TCP connection, association answer or C-ECHO response within the timeouts.
        - V(rejected) the peer rejected the association (see RV(results[].reason)).
        - V(aborted) the peer aborted the association or closed the connection.
        - V(no_accepted_context) the peer accepted the association but not the Verification SOP class.
        - V(bad_status) the C-ECHO response carried a status other than C(0x0000).
        - V(tls_error) the TLS handshake or the encrypted channel failed (certificate not trusted, wrong host
          name, protocol mismatch, client certificate refused).
      type: str
      sample: success
    status:
      description: The C-ECHO status code of the last echo, when a response arrived (V(0) is success).
      type: int
      sample: 0
    reason:
      description:
        - Why the peer failed, in words; V(null) on success.
        - For a rejection, the result, source and diagnostic of the A-ASSOCIATE-RJ.
      type: str
      sample: "rejected-permanent by the called service-user: called AE title not recognised"
    latency_ms:
      description:
        - Time from opening the connection to the C-ECHO response, over the successful echoes, in
          milliseconds. The values are V(null) when no echo succeeded.
      type: dict
      contains:
        min:
          description: Fastest echo.
          type: float
          sample: 3.512
        median:
          description: Median echo.
          type: float
          sample: 4.108
        max:
          description: Slowest echo.
          type: float
          sample: 9.771
    attempts:
      description: Echoes tried for this peer, failed retries during O(wait) included.
      type: int
      sample: 3
    retried:
      description:
        - The failed tries that were retried during O(wait), oldest first, as the outcome, a colon and the reason; a failure
          repeated in a row is listed once with the number of times. Empty when the first try decided.
      type: list
      elements: str
      sample: ["rejected: rejected-transient by the service-provider (presentation): local limit exceeded (2 times)"]
failed_peers:
  description: The peers whose outcome is not V(success), as C(CALLED_AET@host:port).
  returned: always
  type: list
  elements: str
  sample: ["ORTHANC@127.0.0.1:4242"]
msg:
  description: A summary; on failure it names each failed peer with its outcome and reason.
  returned: always
  type: str
  sample: "1 of 1 DICOM peer failed the C-ECHO: ORTHANC@127.0.0.1:4242 rejected (rejected-permanent by the called
    service-user: called AE title not recognised)"
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.clinops.upgrade.plugins.module_utils.dicom import (
    HAS_PYNETDICOM,
    PYNETDICOM_IMPORT_ERROR,
    check_peer,
    check_run,
    failure_message,
    merge_peers,
    peer_label,
    quiet_pynetdicom,
    run_peers,
    tls_context_error,
)


def _tls_spec():
    return dict(
        ca_file=dict(type='path'),
        cert_file=dict(type='path'),
        key_file=dict(type='path'),
        verify=dict(type='bool', default=True),
        min_version=dict(type='str', choices=['TLSv1.2', 'TLSv1.3'], default='TLSv1.2'),
    )


def argument_spec():
    """The module's options; peers take the same keys without defaults (they inherit the task's)."""
    return dict(
        host=dict(type='str'),
        port=dict(type='int', default=104),
        called_aet=dict(type='str', default='ANY-SCP'),
        calling_aet=dict(type='str', default='ECHOSCU'),
        connect_timeout=dict(type='float', default=10.0),
        acse_timeout=dict(type='float', default=30.0),
        dimse_timeout=dict(type='float', default=30.0),
        max_pdu=dict(type='int', default=16382),
        tls=dict(type='dict', options=_tls_spec()),
        peers=dict(type='list', elements='dict', options=dict(
            host=dict(type='str', required=True),
            port=dict(type='int'),
            called_aet=dict(type='str'),
            calling_aet=dict(type='str'),
            connect_timeout=dict(type='float'),
            acse_timeout=dict(type='float'),
            dimse_timeout=dict(type='float'),
            max_pdu=dict(type='int'),
            tls=dict(type='dict', options=_tls_spec()),
        )),
        wait=dict(type='float', default=0.0),
        delay=dict(type='float', default=1.0),
        repeat=dict(type='int', default=1),
        fail_on_error=dict(type='bool', default=True),
    )


def check_input(params):
    """Every problem with the parameters, before any traffic: (peers, [sentences])."""
    errors = check_run(params.get('wait'), params.get('delay'), params.get('repeat'))
    if params.get('peers') is not None and not params['peers']:
        errors.append('peers must list at least one peer')
        return [], errors
    peers = merge_peers(params)
    for peer in peers:
        problems = check_peer(peer)
        errors.extend(problems)
        if not problems:
            problem = tls_context_error(peer.get('tls'), 'peer %s' % peer_label(peer))
            if problem:
                errors.append(problem)
    return peers, errors


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        mutually_exclusive=[('host', 'peers')],
        required_one_of=[('host', 'peers')],
        supports_check_mode=True,
    )
    if not HAS_PYNETDICOM:
        module.fail_json(msg=missing_required_lib('pynetdicom'), exception=PYNETDICOM_IMPORT_ERROR)

    peers, errors = check_input(module.params)
    if errors:
        module.fail_json(msg='invalid input: ' + '; '.join(errors), changed=False)

    quiet_pynetdicom()
    results = run_peers(peers, wait=module.params['wait'], delay=module.params['delay'],
                        repeat=module.params['repeat'])
    failed = [peer_label(r) for r in results if r['outcome'] != 'success']
    if failed:
        msg = failure_message(results)
        if module.params['fail_on_error']:
            module.fail_json(msg=msg, changed=False, results=results, failed_peers=failed)
    else:
        msg = '%d DICOM peer%s answered the C-ECHO with success' % (len(results), '' if len(results) == 1 else 's')
    module.exit_json(changed=False, msg=msg, results=results, failed_peers=failed)


if __name__ == '__main__':
    main()
