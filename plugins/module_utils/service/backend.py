# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The base class of service_stop_ordered's POSIX backends (one file each: supervisor, systemd, sysvinit, script)."""

from __future__ import annotations


# ---------------------------------------------------------------- backends

class Backend:
    """How one service is asked to stop and start, and what the backend says about it."""

    name = None

    def __init__(self, module, svc, ctx):
        self.module = module
        self.svc = svc
        self.ctx = ctx

    def check(self):
        """A message when the service cannot be controlled this way, else None."""
        return None

    def running(self):
        """The backend's own view: True running, False stopped, None no view of its own."""
        return None

    def up(self):
        """Whether the backend reports the service fully started (None: no view of its own)."""
        return None

    def pids(self):
        """Pids the backend knows for the service."""
        return []

    def describe(self):
        """The backend state in words for failure messages."""
        return ''

    def start_failed(self):
        """A message when the backend knows the start failed for good."""
        return None

    def request_stop(self, seconds):
        raise NotImplementedError

    def request_start(self, seconds):
        raise NotImplementedError

    def kill(self):
        """Backend-side SIGKILL; returns True when the backend did it."""
        return False


class BackendError(Exception):
    """A backend call failed; the message names the service and the cause."""
