"""Debian's Dovecot as a real IMAP server on loopback: one mailbox user, IMAP over TLS
only, its own configuration, base directory and log in a temporary directory, run in
the foreground as a child of the test. `scripts/test` installs `dovecot-imapd`."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import IN_CI
from tests.servers import HOST, make_tls_files

DOVECOT = "/usr/sbin/dovecot"
USER = "bounces"
PASSWORD = "mailbox-pw"

CONFIG = """
protocols = imap
listen = {host}
base_dir = {root}/run
instance_name = chainmail-test-{port}
log_path = {root}/dovecot.log
first_valid_uid = 1
ssl = required
ssl_cert = <{root}/cert.pem
ssl_key = <{root}/key.pem
auth_mechanisms = plain
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {root}/passwd
}}
userdb {{
  driver = static
  args = uid=dovecot gid=dovecot home={root}/mail/%u
}}
mail_location = maildir:~/Maildir
service imap-login {{
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    port = {port}
    ssl = yes
  }}
}}
"""


def dovecot_or_skip() -> None:
    reason = None
    if not os.path.exists(DOVECOT):
        reason = "Dovecot is not installed (apt-get install dovecot-imapd)"
    elif os.geteuid() != 0:
        reason = "Dovecot's test server runs as root (it drops to its own users)"
    if reason is not None:
        if IN_CI:
            pytest.fail(f"{reason}; scripts/test installs it")
        pytest.skip(reason)


class DovecotTestServer:
    def __init__(self) -> None:
        dovecot_or_skip()
        # Not pytest's tmp_path: Dovecot's own users must reach the mail directory.
        self.root = Path(tempfile.mkdtemp(prefix="chainmail-dovecot-"))
        self.root.chmod(0o755)
        with socket.socket() as probe:
            probe.bind((HOST, 0))
            self.port = probe.getsockname()[1]
        self.tls = make_tls_files(self.root)
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> DovecotTestServer:
        (self.root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}::::::\n")
        mail = self.root / "mail"
        mail.mkdir()
        shutil.chown(mail, "dovecot", "dovecot")
        config = self.root / "dovecot.conf"
        config.write_text(CONFIG.format(host=HOST, root=self.root, port=self.port))
        self._process = subprocess.Popen([DOVECOT, "-F", "-c", str(config)])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection((HOST, self.port), timeout=0.2).close()
                return self
            except OSError:
                if self._process.poll() is not None:
                    break
                time.sleep(0.05)
        self.stop()
        log = self.root / "dovecot.log"
        raise RuntimeError(f"Dovecot did not start: {log.read_text() if log.exists() else ''}")

    def url(self, mailbox: str = "") -> str:
        return f"imaps://{USER}:{PASSWORD}@{HOST}:{self.port}/{mailbox}"

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> DovecotTestServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
