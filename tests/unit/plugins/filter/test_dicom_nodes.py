# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The filters dicom_nodes (each distinct node once) and dicom_answers (each host's answers from that one probe)."""

from __future__ import annotations

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.clinops.upgrade.plugins.filter.dicom_nodes import FilterModule

FILTERS = FilterModule().filters()
SERVER = [{'name': 'Echo TS', 'type': 'command', 'argv': ['x']},
          {'name': 'C-ECHO to the DICOM server', 'type': 'dicom', 'host': '127.0.0.1', 'port': '4242', 'called_aet': 'PMOD_DS1'}]
CLIENT = [{'name': "C-ECHO to the server's DICOM node", 'type': 'dicom', 'host': '127.0.0.1', 'port': 4242,
           'called_aet': 'PMOD_DS1'}]


def test_the_same_node_of_many_hosts_is_echoed_once():
    nodes = FILTERS['dicom_nodes']([SERVER, CLIENT, CLIENT, [], CLIENT])
    assert nodes == [{'host': '127.0.0.1', 'port': 4242, 'called_aet': 'PMOD_DS1', 'calling_aet': 'CLINOPS_UPG'}]


def test_nodes_differ_by_address_port_called_or_calling_ae():
    other_port = [dict(CLIENT[0], port=4243)]
    other_called = [dict(CLIENT[0], called_aet='PACS')]
    other_calling = [dict(CLIENT[0], calling_aet='WS12')]
    other_host = [dict(CLIENT[0], host='127.0.0.2')]
    nodes = FILTERS['dicom_nodes']([CLIENT, other_port, other_called, other_calling, other_host, CLIENT])
    assert [(n['host'], n['port'], n['called_aet'], n['calling_aet']) for n in nodes] == [
        ('127.0.0.1', 4242, 'PMOD_DS1', 'CLINOPS_UPG'), ('127.0.0.1', 4243, 'PMOD_DS1', 'CLINOPS_UPG'),
        ('127.0.0.1', 4242, 'PACS', 'CLINOPS_UPG'), ('127.0.0.1', 4242, 'PMOD_DS1', 'WS12'),
        ('127.0.0.2', 4242, 'PMOD_DS1', 'CLINOPS_UPG')]


def test_defaults_are_filled_in_so_that_equal_nodes_compare_equal():
    nodes = FILTERS['dicom_nodes']([[{'type': 'dicom', 'host': 'pacs'}], [{'type': 'dicom', 'host': 'pacs', 'port': 104,
                                                                          'called_aet': 'ANY-SCP'}]])
    assert nodes == [{'host': 'pacs', 'port': 104, 'called_aet': 'ANY-SCP', 'calling_aet': 'CLINOPS_UPG'}]


def test_each_host_gets_the_answers_for_its_own_nodes():
    dead = [dict(CLIENT[0], port=5999)]
    nodes = FILTERS['dicom_nodes']([SERVER, CLIENT, dead])
    results = [{'host': '127.0.0.1', 'port': 4242, 'called_aet': 'PMOD_DS1', 'calling_aet': 'CLINOPS_UPG', 'outcome': 'success'},
               {'host': '127.0.0.1', 'port': 5999, 'called_aet': 'PMOD_DS1', 'calling_aet': 'CLINOPS_UPG', 'outcome': 'refused'}]
    assert [a['outcome'] for a in FILTERS['dicom_answers'](SERVER, nodes, results)] == ['success']
    assert [a['outcome'] for a in FILTERS['dicom_answers'](CLIENT, nodes, results)] == ['success']
    assert FILTERS['dicom_answers'](dead, nodes, results) == [results[1]]
    assert FILTERS['dicom_answers']([], nodes, results) == []


def test_a_node_the_probe_did_not_cover_is_never_success():
    answers = FILTERS['dicom_answers'](CLIENT, [], [])
    assert answers[0]['outcome'] == 'not_probed' and answers[0]['port'] == 4242


@pytest.mark.parametrize('check', [{'type': 'dicom'}, {'type': 'dicom', 'host': 'pacs', 'port': 'abc'}])
def test_a_check_without_host_or_with_a_bad_port_is_refused_with_a_message(check):
    with pytest.raises(AnsibleFilterError):
        FILTERS['dicom_nodes']([[check]])
