#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: artifact_fetch
short_description: Download a release from the vendor's FTP, FTPS, HTTPS or file URL, resumable, checked by its sha256
version_added: 0.1.0
description:
  - Downloads O(url) into the folder O(dest) as C(<dest>/<name>), through C(<dest>/<name>.part). A partial file left by an
    interrupted download is resumed (FTP C(REST), HTTP C(Range), a seek for C(file://)); a server that cannot resume
    sends the whole file again.
  - The finished file's sha256 must be O(checksum), or the one a checksum file at O(checksum_url) gives for it (a bare
    sha256, or C(sha256sum) lines C(<sha256>  <name>)). A file whose sha256 differs is deleted and the module fails,
    naming the URL, the sha256 it got and the one expected. Only a file that matches is renamed into place.
  - Idempotent - when C(<dest>/<name>) is already there with the expected sha256, nothing is downloaded.
  - Certificates of C(ftps://) and C(https://) servers are validated against the system's CAs or O(ca_path); C(ftps://) is
    explicit FTP over TLS (C(AUTH TLS)) with the data connection protected too (C(PROT P)).
  - The engine (M(clinops.upgrade.upgrade_cutover)) runs the same code in its V(stage) step (its option C(artifact_source)),
    before anything stops, so that a failed or wrong download ends the run with the old version still running.
  - Python standard library only (ftplib, urllib, ssl, hashlib).
author:
  - clinops.upgrade contributors (@clinops)
extends_documentation_fragment:
  - clinops.upgrade.attributes
attributes:
  check_mode:
    support: full
    details: Reads the checksum file when O(checksum_url) is given and the local file; downloads and writes nothing.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  url:
    description:
      - Where the release is, C(ftp://host[:port]/path), C(ftps://...), C(https://...), C(http://...) or C(file:///path).
      - A user or password inside the URL is refused; give them in O(url_username) and O(url_password).
    type: str
    required: true
  dest:
    description: The folder the release is downloaded into (created when missing, mode 0750).
    type: path
    required: true
  name:
    description: The file name in O(dest). Default - the last part of the URL's path.
    type: str
  checksum:
    description: The release's sha256 (64 hex digits, C(sha256:) before it allowed). One of O(checksum) and O(checksum_url) is required.
    type: str
  checksum_url:
    description: A checksum file at the source (same schemes and credentials as O(url)), read before the download.
    type: str
  url_username:
    description: The user for the server (FTP login, HTTP basic authentication). FTP default - C(anonymous).
    type: str
  url_password:
    description: The password for the server. Never printed, logged or returned; keep it in Ansible Vault.
    type: str
  validate_certs:
    description: Validate the server's certificate and host name (C(ftps://), C(https://)). Turn off only for a test server.
    type: bool
    default: true
  ca_path:
    description: A PEM file of CA certificates to validate the server's certificate with, instead of the system's.
    type: path
  timeout:
    description: Seconds without an answer from the server before the download fails (the partial file is kept).
    type: int
    default: 30
  resume:
    description: Resume a partial download left in C(<dest>/<name>.part). V(false) starts again from the first byte.
    type: bool
    default: true
notes:
  - A failed download keeps its partial file; the next run resumes it. A file with the wrong sha256 is deleted, never resumed.
seealso:
  - module: clinops.upgrade.upgrade_cutover
"""

EXAMPLES = r"""
- name: Download the new ConAktiv release into Temp_Updateordner beside the server folder
  clinops.upgrade.artifact_fetch:
    url: "ftp://ftp.vendor.example/releases/ConAktiv_Server_{{ upgrade_target_version }}.tar.gz"
    checksum_url: "ftp://ftp.vendor.example/releases/ConAktiv_Server_{{ upgrade_target_version }}.tar.gz.sha256"
    url_username: "{{ vendor_ftp_user }}"
    url_password: "{{ vault_vendor_ftp_password }}"
    dest: /srv/Temp_Updateordner

- name: Download over HTTPS with a known sha256 and the site's own CA
  clinops.upgrade.artifact_fetch:
    url: https://repo.example.org/pmod/pmod-4.4.0.tar.gz
    checksum: "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    ca_path: /etc/ssl/site-ca.pem
    dest: /opt/pmod_staging
"""

RETURN = r"""
path:
  description: The downloaded release.
  returned: success
  type: str
  sample: /srv/Temp_Updateordner/ConAktiv_Server_20.1.tar.gz
url:
  description: The URL it came from (without credentials).
  returned: always
  type: str
  sample: ftp://ftp.vendor.example/releases/ConAktiv_Server_20.1.tar.gz
sha256:
  description: The sha256 the file has (and was expected to have).
  returned: success
  type: str
  sample: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
size:
  description: Bytes of the file (0 in check mode when it is not there yet).
  returned: success
  type: int
  sample: 104857600
resumed_from:
  description: The byte a partial download was resumed from (0 when it started from the beginning).
  returned: success
  type: int
  sample: 52428800
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.clinops.upgrade.plugins.module_utils.artifact import module_kwargs, run


def main():
    run(AnsibleModule(**module_kwargs()))


if __name__ == '__main__':
    main()
