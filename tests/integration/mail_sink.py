"""A real SMTP server (aiosmtpd) on a free port of 127.0.0.1, in this test process, keeping what it receives.

    with MailSink() as smtp:      smtp.port; smtp.messages (from, sorted to, raw data); smtp.auths; smtp.parsed()

AUTH PLAIN and LOGIN are offered without TLS (loopback only) and every login is recorded, so a test reads back which
credentials the client really sent. By default every login is accepted and a client that does not log in sends its mail
all the same; ``MailSink(login=(username, password))`` requires AUTH and accepts only that login, as a site's relay would.
"""
import email
import email.policy
import threading

import pytest

from servers import free_port  # noqa: E402  pylint: disable=import-error

controller = pytest.importorskip('aiosmtpd.controller')
smtp = pytest.importorskip('aiosmtpd.smtp')


class MailSink:
    """aiosmtpd handler and authenticator; started and stopped with ``with`` (or start()/stop())."""

    def __init__(self, login=None):
        self.login = login
        self.messages = []
        self.auths = []
        self.lock = threading.Lock()
        self.port = free_port()
        self.controller = controller.Controller(self, hostname='127.0.0.1', port=self.port, authenticator=self,
                                                auth_require_tls=False, auth_required=login is not None)

    def __call__(self, server, session, envelope, mechanism, auth_data):  # pylint: disable=unused-argument
        login = auth_data.login.decode() if isinstance(auth_data.login, bytes) else auth_data.login
        password = auth_data.password.decode() if isinstance(auth_data.password, bytes) else auth_data.password
        with self.lock:
            self.auths.append((login, password))
        return smtp.AuthResult(success=self.login is None or (login, password) == tuple(self.login))

    async def handle_DATA(self, server, session, envelope):  # pylint: disable=invalid-name,unused-argument
        with self.lock:
            self.messages.append({'from': envelope.mail_from, 'to': sorted(envelope.rcpt_tos),
                                  'authenticated': bool(session.authenticated),
                                  'data': envelope.original_content or envelope.content})
        return '250 OK'

    def start(self):
        self.controller.start()
        return self

    def stop(self):
        self.controller.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def clear(self):
        with self.lock:
            self.messages.clear()
            self.auths.clear()

    def parsed(self):
        with self.lock:
            return [email.message_from_bytes(m['data'], policy=email.policy.default) for m in self.messages]
