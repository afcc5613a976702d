"""A test certificate authority: server certificates for every fleet address,
a client certificate, and a second, unrelated CA for "wrong CA" tests."""

import datetime
import ipaddress
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_DAYS = 3650


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _write(path, data, mode):
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def _pem_key(key):
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )


def _pem_cert(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def _name(cn):
    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "dbfleet"), x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    )


def _builder(subject, issuer, public_key):
    now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=_DAYS))
    )


def _make_ca(cn):
    key = _key()
    cert = (
        _builder(_name(cn), _name(cn), key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _issue(ca_key, ca_cert, cn, sans, server):
    key = _key()
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = _builder(_name(cn), ca_cert.subject, key.public_key()).add_extension(
        x509.ExtendedKeyUsage([usage]), critical=False
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def ensure(pki_dir, server_addresses, client_names):
    """Create (once) the CA, one server cert per address and client certs.

    Returns a dict of paths. Existing files are reused, so `up` twice keeps
    the same CA.
    """
    os.makedirs(pki_dir, mode=0o755, exist_ok=True)
    ca_crt = os.path.join(pki_dir, "ca.crt")
    ca_key_path = os.path.join(pki_dir, "ca.key")
    if os.path.exists(ca_crt):
        with open(ca_key_path, "rb") as f:
            ca_key = serialization.load_pem_private_key(f.read(), None)
        with open(ca_crt, "rb") as f:
            ca_cert = x509.load_pem_x509_certificate(f.read())
    else:
        ca_key, ca_cert = _make_ca("dbfleet test CA")
        _write(ca_key_path, _pem_key(ca_key), 0o600)
        _write(ca_crt, _pem_cert(ca_cert), 0o644)
    wrong = os.path.join(pki_dir, "wrong-ca.crt")
    if not os.path.exists(wrong):
        _write(wrong, _pem_cert(_make_ca("dbfleet unrelated CA")[1]), 0o644)
    paths = {"ca_cert": ca_crt, "wrong_ca_cert": wrong, "servers": {}, "clients": {}}
    for address in server_addresses:
        crt = os.path.join(pki_dir, "server-%s.crt" % address)
        key = os.path.join(pki_dir, "server-%s.key" % address)
        if not os.path.exists(crt):
            sans = [x509.IPAddress(ipaddress.ip_address(address)), x509.DNSName("localhost")]
            k, c = _issue(ca_key, ca_cert, address, sans, server=True)
            _write(key, _pem_key(k), 0o600)
            _write(crt, _pem_cert(c), 0o644)
        paths["servers"][address] = {"cert": crt, "key": key}
    for name in client_names:
        crt = os.path.join(pki_dir, "client-%s.crt" % name)
        key = os.path.join(pki_dir, "client-%s.key" % name)
        if not os.path.exists(crt):
            k, c = _issue(ca_key, ca_cert, name, [], server=False)
            _write(key, _pem_key(k), 0o600)
            _write(crt, _pem_cert(c), 0o644)
        paths["clients"][name] = {"cert": crt, "key": key}
    return paths
