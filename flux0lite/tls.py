"""TLS settings from files: a CA bundle to trust and a client certificate to present.

Built on :func:`ssl.create_default_context`, so certificates and host names are always
verified; there is deliberately no switch to turn that off. A CA given here replaces the
system's store for this client (as ``curl --cacert`` does); without one, the system store and
``SSL_CERT_FILE``/``SSL_CERT_DIR`` apply.
"""

from __future__ import annotations

import os
import ssl
import stat
from typing import Optional, Union

from .errors import ConfigError

__all__ = ["tls_context", "system_context", "check_system_ca_file", "PathLike"]

PathLike = Union[str, "os.PathLike[str]"]


class _EncryptedKey(Exception):
    """Raised by the password callback: a key that needs a password cannot be used unattended."""


def _no_password() -> str:
    # Without a callback OpenSSL would prompt on the terminal: a daemon would hang there.
    raise _EncryptedKey


def tls_context(
    *, cacert: Optional[PathLike] = None, cert: Optional[PathLike] = None, key: Optional[PathLike] = None
) -> Optional[ssl.SSLContext]:
    """A verifying context that trusts ``cacert`` (a PEM file or a hashed directory) and presents
    ``cert`` (PEM, with its key inside or in ``key``); None when no file is given."""
    if cacert is None and cert is None and key is None:
        return None
    if key is not None and cert is None:
        raise ConfigError("a client key needs its certificate: give cert= (--cert) too")
    ca_path = _readable(cacert, "CA bundle (cacert)", directory_ok=True) if cacert is not None else None
    try:
        if ca_path is not None and os.path.isdir(ca_path):
            context = ssl.create_default_context(capath=ca_path)
        else:
            context = ssl.create_default_context(cafile=ca_path)
    except ssl.SSLError as exc:
        raise ConfigError(f"CA bundle {ca_path} holds no usable PEM certificate: {exc.reason or exc}") from exc
    except OSError as exc:  # changed since it was checked, or a read failing part-way (EIO)
        raise ConfigError(f"CA bundle (cacert): cannot read {ca_path}: {exc.strerror or exc}") from exc
    if cert is not None:
        cert_path = _readable(cert, "client certificate (cert)")
        key_path = _readable(key, "client key (key)") if key is not None else None
        try:
            context.load_cert_chain(cert_path, key_path, password=_no_password)
        except _EncryptedKey as exc:
            raise ConfigError(
                f"the client key in {key_path or cert_path} is encrypted: give an unencrypted key file "
                "(e.g. openssl pkey -in KEY -out KEY.plain), readable by this user only"
            ) from exc
        except ssl.SSLError as exc:
            raise ConfigError(
                f"cannot use client certificate {cert_path}"
                + (f" with key {key_path}" if key_path else "")
                + f": not PEM, or the key does not match ({exc.reason or exc})"
            ) from exc
        except OSError as exc:  # changed since it was checked, or a read failing part-way (EIO)
            raise ConfigError(
                f"client certificate (cert): cannot read {cert_path}"
                + (f" or key {key_path}" if key_path else "")
                + f": {exc.strerror or exc}"
            ) from exc
    return context


def check_system_ca_file() -> None:
    """The file ``SSL_CERT_FILE`` names, when there is one, is no FIFO, socket or device:
    OpenSSL, loading the system's store, would block for ever opening a FIFO and read a device
    without end. (A missing or unreadable file, or a folder, OpenSSL skips, as it always has.)"""
    variable = ssl.get_default_verify_paths().openssl_cafile_env
    named = os.environ.get(variable)
    if not named:
        return
    try:
        mode = os.stat(named).st_mode  # no open: that is what would block
    except (OSError, ValueError):  # missing, or a name no file can have (NUL)
        return
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise ConfigError(
            f"the CA bundle that {variable} names: {named} is not a regular file (a FIFO, socket or device)"
        )


def system_context() -> ssl.SSLContext:
    """A verifying context that trusts the system's store (and ``SSL_CERT_FILE``/``SSL_CERT_DIR``)."""
    check_system_ca_file()
    return ssl.create_default_context()


def _readable(path: PathLike, what: str, *, directory_ok: bool = False) -> str:
    """``path`` as a string, once it is known to be a regular file (or folder) this process can read.

    Opened without blocking and checked on the open descriptor: a FIFO would block the open (and
    OpenSSL's read) for ever, a device (/dev/zero) would be read without end.
    """
    try:
        text = os.fspath(path)
    except TypeError as exc:
        raise ConfigError(f"{what}: expected a file name, got {type(path).__name__}") from exc
    if not isinstance(text, str) or not text or "\x00" in text:
        raise ConfigError(f"{what}: not a usable file name: {text!r}")
    try:
        fd = os.open(text, os.O_RDONLY | os.O_NONBLOCK)
        try:
            mode = os.fstat(fd).st_mode
            if stat.S_ISDIR(mode):
                if not directory_ok:
                    raise ConfigError(f"{what}: {text} is a folder, not a file")
                os.listdir(text)
            elif not stat.S_ISREG(mode):
                raise ConfigError(f"{what}: {text} is not a regular file (a FIFO, socket or device)")
            else:
                os.read(fd, 1)  # a file whose read fails (EIO) is refused here, by name
        finally:
            os.close(fd)
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read {text}: {exc.strerror or exc}") from exc
    return text
