"""The plane's SSH CA and remote commands, against real sshd boxes, the real OpenSSH client and
paramiko: certificates the boxes accept and refuse, pinned host keys, errors people read, and
the session environment the node scripts will see."""

from __future__ import annotations

import base64
import hashlib
import os
import pickle
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from brev.ssh import ca
from brev.ssh.local import run_local
from brev.ssh.remote import (
    CommandTimedOut,
    HostKeyChanged,
    RemoteResult,
    SshAuthRefused,
    SshConnection,
    SshError,
    SshTarget,
    SshUnreachable,
    fetch_host_key,
)
from tests import sshbox
from tests.postgres import free_port
from tests.sshbox import SshBox, make_box, make_user_key

# The fixture lives with the boxes; naming it here lets this module's tests request it.
ssh_box_factory = sshbox.ssh_box_factory

REPO = Path(__file__).resolve().parents[1]
MIB = 1024 * 1024


def _write_private(path: Path, pem: str) -> Path:
    path.write_text(pem)
    path.chmod(0o600)  # the OpenSSH client refuses a key others can read
    return path


@dataclass
class Keys:
    """The plane's CA and a person's key, as files for the OpenSSH client too."""

    directory: Path
    ca_pem: str
    user_pem: str
    user_file: Path

    @property
    def ca_public(self) -> str:
        return ca.public_key_line(self.ca_pem, "brev-ca")

    @property
    def user_public(self) -> str:
        return ca.public_key_line(self.user_pem, "alice")

    def certificate(
        self,
        *,
        principals: Sequence[str] = ("root",),
        valid_for: timedelta = timedelta(hours=1),
        force_command: str | None = None,
        now: datetime | None = None,
    ) -> str:
        return ca.sign_user_certificate(
            self.ca_pem,
            self.user_public,
            key_id="alice@example.com",
            principals=principals,
            valid_for=valid_for,
            force_command=force_command,
            now=now,
        )


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    directory = tmp_path_factory.mktemp("keys")
    user_pem = ca.new_private_key()
    return Keys(
        directory=directory,
        ca_pem=ca.new_private_key(),
        user_pem=user_pem,
        user_file=_write_private(directory / "alice", user_pem),
    )


@dataclass
class OtherKeys:
    """Keys of the other types and layouts a person may hand brev, all authorized."""

    rsa_pem: str  # PEM "BEGIN RSA PRIVATE KEY", as ssh-keygen -m PEM writes it
    ecdsa_openssh: str
    ed25519_pkcs8: str  # "BEGIN PRIVATE KEY"
    ed25519_ssh_keygen: str

    def public_lines(self) -> list[str]:
        texts = (self.rsa_pem, self.ecdsa_openssh, self.ed25519_pkcs8, self.ed25519_ssh_keygen)
        return [ca.public_key_line(text) for text in texts]


@pytest.fixture(scope="module")
def other_keys(tmp_path_factory: pytest.TempPathFactory) -> OtherKeys:
    directory = tmp_path_factory.mktemp("other-keys")
    texts = []
    for kind, extra in (("rsa", ["-b", "2048", "-m", "PEM"]), ("ecdsa", [])):
        path = directory / kind
        subprocess.run(
            ["ssh-keygen", "-q", "-t", kind, *extra, "-N", "", "-f", str(path)], check=True
        )
        texts.append(path.read_text())
    pkcs8 = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    ed25519, public_line = make_user_key(directory)
    assert ca.public_key_line(ed25519.read_text(), "id_ed25519") == public_line
    return OtherKeys(
        rsa_pem=texts[0],
        ecdsa_openssh=texts[1],
        ed25519_pkcs8=pkcs8.decode(),
        ed25519_ssh_keygen=ed25519.read_text(),
    )


@dataclass
class Boxes:
    main: SshBox  # 2 GPUs, trusts the CA, Python fine
    one_gpu: SshBox  # 1 GPU, no python3
    no_gpu: SshBox  # no GPU, python3 too old


@pytest.fixture(scope="module")
def boxes(
    tmp_path_factory: pytest.TempPathFactory, keys: Keys, other_keys: OtherKeys
) -> Iterator[Boxes]:
    root = tmp_path_factory.mktemp("boxes")
    authorized = [keys.user_public]
    started: list[SshBox] = []
    try:
        started.append(
            make_box(
                root / "main",
                gpus=2,
                trusted_ca=keys.ca_public,
                authorized_keys=[*authorized, *other_keys.public_lines()],
            )
        )
        started.append(make_box(root / "one", gpus=1, authorized_keys=authorized, python="missing"))
        started.append(make_box(root / "none", gpus=0, authorized_keys=authorized, python="old"))
        yield Boxes(*started)
    finally:
        for box in started:
            box.stop()


@pytest.fixture(scope="module")
def main(boxes: Boxes, keys: Keys) -> Iterator[SshConnection]:
    """One connection to the main box, shared by the tests of `run`."""
    with connect(boxes.main, keys.user_pem) as remote:
        yield remote


def connect(
    box: SshBox, private_pem: str, *, host_key: str | None = None, certificate: str | None = None
) -> SshConnection:
    return SshConnection(
        box.target(),
        host_key=host_key or box.host_key,
        private_key_pem=private_pem,
        certificate=certificate,
    )


def ssh(
    box: SshBox, identity: Path, command: str, *options: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        box.ssh_argv(identity, command, options=options),
        capture_output=True,
        text=True,
        timeout=30,
    )


def certificate_for(
    keys: Keys,
    name: str,
    *,
    principals: Sequence[str] = ("root",),
    valid_for: timedelta = timedelta(hours=1),
    force_command: str | None = None,
    now: datetime | None = None,
) -> tuple[Path, str]:
    """A key of its own (not in authorized_keys) with a certificate from the CA."""
    pem = ca.new_private_key()
    path = _write_private(keys.directory / name, pem)
    cert = ca.sign_user_certificate(
        keys.ca_pem,
        ca.public_key_line(pem),
        key_id=name,
        principals=principals,
        valid_for=valid_for,
        force_command=force_command,
        now=now,
    )
    return path, cert


# -- the CA: pure functions ---------------------------------------------------------------


def test_new_private_key_is_an_openssh_ed25519_key(tmp_path: Path) -> None:
    pem = ca.new_private_key()
    assert pem.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    line = ca.public_key_line(pem, "alice@laptop")
    assert re.fullmatch(r"ssh-ed25519 AAAA[0-9A-Za-z+/=]+ alice@laptop", line)
    assert ca.public_key_line(pem) == line.rsplit(" ", 1)[0]
    # OpenSSH itself reads the key and derives the same public line
    path = _write_private(tmp_path / "key", pem)
    derived = subprocess.run(
        ["ssh-keygen", "-y", "-f", str(path)], capture_output=True, text=True, check=True
    )
    assert derived.stdout.split()[:2] == line.split()[:2]
    assert ca.new_private_key() != pem


@pytest.mark.parametrize("kind", ["ed25519", "rsa", "ecdsa"])
def test_fingerprint_matches_ssh_keygen(tmp_path: Path, kind: str) -> None:
    path = tmp_path / kind
    extra = ["-b", "2048"] if kind == "rsa" else []
    subprocess.run(
        ["ssh-keygen", "-q", "-t", kind, *extra, "-N", "", "-C", "a b", "-f", str(path)],
        check=True,
    )
    line = path.with_name(kind + ".pub").read_text()
    listed = subprocess.run(
        ["ssh-keygen", "-lf", str(path) + ".pub"], capture_output=True, text=True, check=True
    )
    assert ca.fingerprint(line) == listed.stdout.split()[1]
    assert ca.fingerprint(line).startswith("SHA256:") and not line.endswith("=")


def test_fingerprint_refuses_mangled_lines() -> None:
    line = ca.public_key_line(ca.new_private_key())
    for bad in ("", "ssh-ed25519", "ssh-ed25519 !!!notbase64", "ssh-rsa " + line.split()[1]):
        with pytest.raises(ca.InvalidKey):
            ca.fingerprint(bad)


def test_certificate_carries_what_was_asked(keys: Keys) -> None:
    now = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    line = keys.certificate(
        principals=["root", "ubuntu"],
        valid_for=timedelta(hours=8),
        force_command="echo forced",
        now=now,
    )
    assert line.startswith("ssh-ed25519-cert-v01@openssh.com AAAA")
    cert = serialization.load_ssh_public_identity(line.encode())
    assert isinstance(cert, serialization.SSHCertificate)
    cert.verify_cert_signature()
    assert cert.type == serialization.SSHCertificateType.USER
    assert cert.key_id == b"alice@example.com"
    assert cert.valid_principals == [b"root", b"ubuntu"]
    assert cert.valid_after == int((now - timedelta(minutes=5)).timestamp())
    assert cert.valid_before == int((now + timedelta(hours=8)).timestamp())
    assert cert.critical_options == {b"force-command": b"echo forced"}
    assert set(cert.extensions) == {b"permit-pty", b"permit-port-forwarding", b"permit-user-rc"}
    signer = cert.signature_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    assert signer.decode() == keys.ca_public.rsplit(" ", 1)[0]
    certified = cert.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    assert certified.decode() == keys.user_public.rsplit(" ", 1)[0]
    other = serialization.load_ssh_public_identity(keys.certificate(now=now).encode())
    assert isinstance(other, serialization.SSHCertificate)
    assert other.serial != cert.serial  # random serials
    assert other.critical_options == {}


def test_sign_refuses_what_would_be_dangerous_or_ambiguous(keys: Keys) -> None:
    with pytest.raises(ValueError, match="principal"):
        keys.certificate(principals=[])  # OpenSSH: no principals = any user
    with pytest.raises(ValueError, match="principal"):
        keys.certificate(principals=[""])
    with pytest.raises(ValueError, match="positive"):
        keys.certificate(valid_for=timedelta(0))
    with pytest.raises(ValueError, match="timezone"):
        keys.certificate(now=datetime(2030, 1, 1))  # naive: the point of the test
    with pytest.raises(ca.InvalidKey):
        ca.sign_user_certificate(
            "not a key", keys.user_public, key_id="x", principals=["root"], valid_for=timedelta(1)
        )


def test_unusable_private_keys_say_why_without_repeating_them(tmp_path: Path) -> None:
    path = tmp_path / "locked"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "secret-pass", "-f", str(path)], check=True
    )
    locked = path.read_text()
    with pytest.raises(ca.InvalidKey, match="passphrase-protected") as raised:
        ca.public_key_line(locked)
    assert "PRIVATE KEY" not in raised.value.message
    assert "\n" not in raised.value.message
    # SshConnection refuses it before opening any connection (port 9: nothing listens)
    with pytest.raises(SshError, match="passphrase-protected") as refused:
        SshConnection(
            SshTarget("127.0.0.1", 9, "root"),
            host_key=ca.public_key_line(ca.new_private_key()),
            private_key_pem=locked,
        )
    assert locked.splitlines()[1] not in refused.value.message
    garbage = (
        "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAAsecretish\n-----END OPENSSH PRIVATE KEY-----"
    )
    with pytest.raises(ca.InvalidKey) as invalid:
        ca.public_key_line(garbage)
    assert "secretish" not in invalid.value.message


def test_importing_brev_ssh_loads_neither_paramiko_nor_cryptography() -> None:
    code = (
        "import sys, brev.ssh, brev.ssh.ca, brev.ssh.remote, brev.ssh.local\n"
        "print([m for m in sys.modules if m.split('.')[0] in ('paramiko', 'cryptography')])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_no_file_in_the_repository_turns_host_key_checking_off() -> None:
    # Built from pieces so that this file does not match itself.
    forbidden = re.compile(
        "Auto" + "AddPolicy|" + "StrictHostKey" + r"Checking[\s=]+no\b", re.IGNORECASE
    )
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        check=True,
    )
    offenders = []
    for name in filter(None, listed.stdout.decode().split("\0")):
        path = REPO / name
        if not path.is_file():
            continue  # deleted in the working tree
        if forbidden.search(path.read_bytes().decode(errors="replace")):
            offenders.append(name)
    assert offenders == []


# -- run_local: the twin of SshConnection.run ---------------------------------------------------


def test_run_local_gives_what_a_remote_run_gives() -> None:
    assert run_local("echo out; echo err >&2; exit 3") == RemoteResult(3, "out\n", "err\n")
    data = os.urandom(5 * MIB)
    done = run_local("sha256sum", stdin=data)
    assert done.stdout.split()[0] == hashlib.sha256(data).hexdigest()
    assert run_local("kill -9 $$").exit_code == -1
    with pytest.raises(CommandTimedOut, match=r"did not finish within 0\.2 s"):
        run_local("sleep 5", timeout=0.2)


# -- errors before any login ----------------------------------------------------------------


def test_nothing_listening_is_unreachable() -> None:
    port = free_port()
    with pytest.raises(SshUnreachable) as raised:
        fetch_host_key("127.0.0.1", port, timeout=5)
    assert raised.value.message == (
        f"cannot reach 127.0.0.1:{port}: connection refused; "
        "check the host and port (is sshd running?)"
    )
    with pytest.raises(SshUnreachable, match="connection refused"):
        SshConnection(
            SshTarget("127.0.0.1", port, "root"),
            host_key=ca.public_key_line(ca.new_private_key()),
            private_key_pem=ca.new_private_key(),
        )


def test_a_server_that_is_not_ssh_is_unreachable() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:

        def answer_like_a_web_server() -> None:
            connection, _ = server.accept()
            with connection:
                connection.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

        threading.Thread(target=answer_like_a_web_server, daemon=True).start()
        port = server.getsockname()[1]
        with pytest.raises(SshUnreachable, match="no SSH server answered"):
            fetch_host_key("127.0.0.1", port, timeout=5)


# -- real boxes -----------------------------------------------------------------------------


@pytest.mark.slow
def test_fetch_host_key_returns_the_box_key(boxes: Boxes) -> None:
    assert fetch_host_key("127.0.0.1", boxes.main.port) == boxes.main.host_key


@pytest.mark.slow
def test_certificate_from_the_ca_logs_in(boxes: Boxes, keys: Keys) -> None:
    path, cert = certificate_for(keys, "carol")
    # paramiko: this key is in no authorized_keys, only the certificate gets it in
    with connect(boxes.main, path.read_text(), certificate=cert) as remote:
        assert remote.run("id -un").stdout == "root\n"
    with pytest.raises(SshAuthRefused):
        connect(boxes.main, path.read_text())
    # the OpenSSH client, the certificate named explicitly
    cert_file = keys.directory / "carol-certificate"
    cert_file.write_text(cert + "\n")
    done = ssh(boxes.main, path, "echo in", "-o", f"CertificateFile={cert_file}")
    assert (done.returncode, done.stdout) == (0, "in\n"), done.stderr
    assert ssh(boxes.main, path, "echo in").returncode == 255


@pytest.mark.slow
def test_certificate_for_another_user_is_refused(boxes: Boxes, keys: Keys) -> None:
    path, cert = certificate_for(keys, "dave", principals=["ubuntu"])
    with pytest.raises(SshAuthRefused, match="refused the certificate") as raised:
        connect(boxes.main, path.read_text(), certificate=cert)
    assert "must name root" in raised.value.message
    cert_file = keys.directory / "dave-cert.pub"  # picked up next to the key by ssh
    cert_file.write_text(cert + "\n")
    done = ssh(boxes.main, path, "echo in")
    assert done.returncode == 255 and "Permission denied" in done.stderr


@pytest.mark.slow
def test_expired_certificate_is_refused(boxes: Boxes, keys: Keys) -> None:
    long_ago = datetime.now(UTC) - timedelta(hours=3)
    path, cert = certificate_for(keys, "erin", valid_for=timedelta(hours=1), now=long_ago)
    with pytest.raises(SshAuthRefused):
        connect(boxes.main, path.read_text(), certificate=cert)
    (keys.directory / "erin-cert.pub").write_text(cert + "\n")
    assert ssh(boxes.main, path, "echo in").returncode == 255


@pytest.mark.slow
def test_certificate_of_a_box_that_does_not_trust_the_ca_is_refused(
    boxes: Boxes, keys: Keys
) -> None:
    path, cert = certificate_for(keys, "frank")
    with pytest.raises(SshAuthRefused, match="TrustedUserCAKeys"):
        connect(boxes.one_gpu, path.read_text(), certificate=cert)


@pytest.mark.slow
def test_force_command_runs_instead_of_the_requested_one(boxes: Boxes, keys: Keys) -> None:
    path, cert = certificate_for(
        keys, "gina", force_command='echo forced; echo "asked: $SSH_ORIGINAL_COMMAND"'
    )
    with connect(boxes.main, path.read_text(), certificate=cert) as remote:
        done = remote.run("echo requested")
    assert done == RemoteResult(0, "forced\nasked: echo requested\n", "")


@pytest.mark.slow
def test_certificate_for_another_key_is_refused_before_connecting(keys: Keys) -> None:
    _, cert = certificate_for(keys, "hugo")
    with pytest.raises(SshError, match="certificate is for key SHA256:"):
        SshConnection(
            SshTarget("127.0.0.1", 9, "root"),
            host_key=ca.public_key_line(ca.new_private_key()),
            private_key_pem=keys.user_pem,
            certificate=cert,
        )


@pytest.mark.slow
def test_wrong_pinned_host_key_is_refused(boxes: Boxes, keys: Keys) -> None:
    pinned = ca.public_key_line(ca.new_private_key())
    with pytest.raises(HostKeyChanged) as raised:
        connect(boxes.main, keys.user_pem, host_key=pinned)
    message = raised.value.message
    assert f"the host key of 127.0.0.1:{boxes.main.port} changed" in message
    assert f"pinned {ca.fingerprint(pinned)}, offered {ca.fingerprint(boxes.main.host_key)}" in (
        message
    )
    assert "ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub" in message
    assert raised.value.offered_key == boxes.main.host_key
    assert pickle.loads(pickle.dumps(raised.value)).message == message  # noqa: S301 - our own bytes


@pytest.mark.slow
def test_unauthorized_key_is_refused(boxes: Boxes) -> None:
    stranger = ca.new_private_key()
    with pytest.raises(SshAuthRefused) as raised:
        connect(boxes.main, stranger)
    fingerprint = ca.fingerprint(ca.public_key_line(stranger))
    assert raised.value.message == (
        f"root@127.0.0.1:{boxes.main.port} refused the key ({fingerprint}); add its public key "
        "to ~root/.ssh/authorized_keys on the box, or pass --identity FILE"
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "which", ["rsa_pem", "ecdsa_openssh", "ed25519_pkcs8", "ed25519_ssh_keygen"]
)
def test_rsa_ecdsa_and_pem_keys_log_in(boxes: Boxes, other_keys: OtherKeys, which: str) -> None:
    with connect(boxes.main, getattr(other_keys, which)) as remote:
        assert remote.run("echo in").stdout == "in\n"


@pytest.mark.slow
def test_restart_keeps_the_key_and_a_reinstall_is_caught(
    ssh_box_factory: Callable[..., SshBox],
) -> None:
    pem = ca.new_private_key()
    box = ssh_box_factory(authorized_keys=[ca.public_key_line(pem)])
    pinned = box.host_key
    box.stop()
    with pytest.raises(SshUnreachable, match="connection refused"):
        connect(box, pem)
    box.start()
    with connect(box, pem) as remote:
        assert remote.run("true").exit_code == 0
    box.regenerate_host_key()
    assert box.host_key != pinned
    with pytest.raises(HostKeyChanged, match=re.escape(ca.fingerprint(box.host_key))):
        connect(box, pem, host_key=pinned)
    with connect(box, pem) as remote:  # re-pinned
        assert remote.run("true").exit_code == 0


@pytest.mark.slow
def test_run_returns_status_stdout_and_stderr(main: SshConnection) -> None:
    assert main.run("echo out; echo err >&2; exit 3") == RemoteResult(3, "out\n", "err\n")
    assert main.run("true") == RemoteResult(0, "", "")
    missing = main.run("no-such-command")
    assert missing.exit_code == 127 and "not found" in missing.stderr
    assert main.run("cat", stdin=b"hello") == RemoteResult(0, "hello", "")
    assert main.run("cat").stdout == ""  # stdin ends at once when none is given
    assert main.run("kill -9 $$").exit_code == -1  # a signal, no status


@pytest.mark.slow
def test_a_dropped_connection_is_reported(boxes: Boxes, keys: Keys) -> None:
    with connect(boxes.main, keys.user_pem) as remote:
        # $PPID is the sshd process serving this connection
        with pytest.raises(SshUnreachable, match=r"lost the connection to 127\.0\.0\.1:"):
            remote.run("kill -9 $PPID; sleep 5")
        with pytest.raises(SshUnreachable, match="lost the connection"):
            remote.run("true")


@pytest.mark.slow
def test_run_moves_megabytes_both_ways_at_once(main: SshConnection) -> None:
    data = base64.b64encode(os.urandom(5 * MIB))[: 5 * MIB]
    digest = hashlib.sha256(data).hexdigest()
    assert main.run("sha256sum", stdin=data).stdout.split()[0] == digest
    big = main.run("head -c 5242880 /dev/zero | tr '\\0' x")
    assert big.stdout == "x" * 5 * MIB
    # the command writes everything it reads to both outputs while we still send: neither
    # side may wait for the other
    echoed = main.run("tee /dev/stderr", stdin=data)
    assert echoed.exit_code == 0
    assert echoed.stdout.encode() == data and echoed.stderr.encode() == data


@pytest.mark.slow
def test_run_times_out_and_the_connection_lives_on(main: SshConnection) -> None:
    with pytest.raises(CommandTimedOut, match=r"`sleep 5` did not finish within 0\.5 s"):
        main.run("sleep 5", timeout=0.5)
    assert main.run("echo still here").stdout == "still here\n"


@pytest.mark.slow
def test_sessions_see_the_box_bin_and_node_home(boxes: Boxes, main: SshConnection) -> None:
    done = main.run('echo "$PATH"; echo "$BREV_NODE_HOME"; command -v nvidia-smi')
    path, node_home, nvidia_smi = done.stdout.splitlines()
    assert path.split(":")[0] == str(boxes.main.bin_dir)
    assert node_home == str(boxes.main.node_home)
    assert nvidia_smi == str(boxes.main.bin_dir / "nvidia-smi")


@pytest.mark.slow
def test_gpus_of_each_box(boxes: Boxes, keys: Keys, main: SshConnection) -> None:
    query = "nvidia-smi --query-gpu=index,name --format=csv,noheader"
    assert main.run(query) == RemoteResult(0, "0, NVIDIA H200\n1, NVIDIA H200\n", "")
    with connect(boxes.one_gpu, keys.user_pem) as remote:
        assert remote.run(query) == RemoteResult(0, "0, NVIDIA H200\n", "")
        uuids = remote.run("nvidia-smi --query-gpu=index,name,uuid --format=csv").stdout
        assert len(uuids.splitlines()) == 2  # header and one GPU
        remote.run(f"echo busy > {boxes.one_gpu.root / 'gpu-state'}")
        apps = remote.run("nvidia-smi --query-compute-apps=gpu_uuid,pid --format=csv,noheader")
        assert len(apps.stdout.splitlines()) == 1
    with connect(boxes.no_gpu, keys.user_pem) as remote:
        none = remote.run(query)
    assert none.exit_code == 127 and "nvidia-smi: command not found" in none.stderr
    # the real OpenSSH client sees the same session
    done = ssh(boxes.main, keys.user_file, query)
    assert (done.returncode, done.stdout) == (0, "0, NVIDIA H200\n1, NVIDIA H200\n")


@pytest.mark.slow
def test_boxes_without_a_usable_python3(boxes: Boxes, keys: Keys, main: SshConnection) -> None:
    probe = "python3 -c 'import sys; print(sys.version_info >= (3, 8))'"
    assert main.run(probe) == RemoteResult(0, "True\n", "")
    with connect(boxes.one_gpu, keys.user_pem) as remote:
        for name in ("python3", "python3.11", "python3.12", "python"):
            done = remote.run(f"{name} -c 'print(1)'")
            assert done.exit_code == 127 and f"{name}: not found" in done.stderr
    with connect(boxes.no_gpu, keys.user_pem) as remote:
        assert remote.run("python3 --version").stdout == "Python 3.6.9\n"
        for name in ("python3", "python3.11", "python3.12"):
            done = remote.run(probe.replace("python3", name, 1))
            assert done.exit_code == 1 and "SyntaxError" in done.stderr
