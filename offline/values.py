"""Real values for the providers the program uses, computed locally from the program's arguments.

What the engine and the random/tls providers would return: random values are random, and
certificates are real X.509 signed by a real CA key (``cryptography``), built from the same
arguments the program passes to pulumi-tls, so rendered files work with real servers.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import secrets
import string
from typing import Any, TypedDict

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


class SignedCert(TypedDict):
    """What pulumi-tls returns for a certificate it signs."""

    certPem: str
    validityStartTime: str
    validityEndTime: str
    readyForRenewal: bool


CURVES = {"P224": ec.SECP224R1, "P256": ec.SECP256R1, "P384": ec.SECP384R1, "P521": ec.SECP521R1}
SUBJECT_FIELDS = {
    "commonName": NameOID.COMMON_NAME,
    "organization": NameOID.ORGANIZATION_NAME,
    "organizationalUnit": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "country": NameOID.COUNTRY_NAME,
    "province": NameOID.STATE_OR_PROVINCE_NAME,
    "locality": NameOID.LOCALITY_NAME,
    "streetAddresses": NameOID.STREET_ADDRESS,
    "postalCode": NameOID.POSTAL_CODE,
    "serialNumber": NameOID.SERIAL_NUMBER,
}
EXTENDED_USES = {
    "server_auth": ExtendedKeyUsageOID.SERVER_AUTH,
    "client_auth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "code_signing": ExtendedKeyUsageOID.CODE_SIGNING,
    "email_protection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "timestamping": ExtendedKeyUsageOID.TIME_STAMPING,
    "ocsp_signing": ExtendedKeyUsageOID.OCSP_SIGNING,
}
KEY_USES = {
    "digital_signature": "digital_signature",
    "content_commitment": "content_commitment",
    "key_encipherment": "key_encipherment",
    "data_encipherment": "data_encipherment",
    "key_agreement": "key_agreement",
    "cert_signing": "key_cert_sign",
    "crl_signing": "crl_sign",
    "encipher_only": "encipher_only",
    "decipher_only": "decipher_only",
}


def random_password(args: dict[str, Any]) -> str:
    """RandomPassword's result: the enabled character classes, each at least its minimum."""
    classes = [
        (args.get("lower", True), string.ascii_lowercase, args.get("minLower", 0)),
        (args.get("upper", True), string.ascii_uppercase, args.get("minUpper", 0)),
        (args.get("numeric", True), string.digits, args.get("minNumeric", 0)),
        (args.get("special", True), args.get("overrideSpecial") or "!@#$%&*()-_=+[]{}<>:?", args.get("minSpecial", 0)),
    ]
    enabled = [(chars, int(minimum)) for on, chars, minimum in classes if on]
    length = int(args["length"])
    chosen = [secrets.choice(chars) for chars, minimum in enabled for _ in range(minimum)]
    alphabet = "".join(chars for chars, _ in enabled)
    chosen += [secrets.choice(alphabet) for _ in range(length - len(chosen))]
    secrets.SystemRandom().shuffle(chosen)
    return "".join(chosen)


def private_key(args: dict[str, Any]) -> PrivateKey:
    algorithm = args.get("algorithm", "RSA")
    if algorithm == "ECDSA":
        return ec.generate_private_key(CURVES[args.get("ecdsaCurve", "P224")]())
    if algorithm == "ED25519":
        return ed25519.Ed25519PrivateKey.generate()
    return rsa.generate_private_key(public_exponent=65537, key_size=int(args.get("rsaBits", 2048)))


def private_key_outputs(key: PrivateKey) -> dict[str, str]:
    pem = serialization.Encoding.PEM
    none = serialization.NoEncryption()
    # pulumi-tls gives RSA keys as PKCS#1, ECDSA as SEC 1 and ED25519 as PKCS#8.
    legacy = (
        serialization.PrivateFormat.PKCS8
        if isinstance(key, ed25519.Ed25519PrivateKey)
        else serialization.PrivateFormat.TraditionalOpenSSL
    )
    public = key.public_key()
    openssh_public = public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return {
        "privateKeyPem": key.private_bytes(pem, legacy, none).decode(),
        "privateKeyPemPkcs8": key.private_bytes(pem, serialization.PrivateFormat.PKCS8, none).decode(),
        "privateKeyOpenssh": key.private_bytes(pem, serialization.PrivateFormat.OpenSSH, none).decode(),
        "publicKeyPem": public.public_bytes(pem, serialization.PublicFormat.SubjectPublicKeyInfo).decode(),
        "publicKeyOpenssh": openssh_public.decode() + "\n",
        "publicKeyFingerprintSha256": "SHA256:"
        + base64.b64encode(hashlib.sha256(base64.b64decode(openssh_public.split()[1])).digest()).decode().rstrip("="),
    }


def _load_key(pem: str) -> PrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey)
    return key


def _name(subject: dict[str, Any] | None) -> x509.Name:
    attributes = []
    for field, oid in SUBJECT_FIELDS.items():
        value = (subject or {}).get(field)
        for item in value if isinstance(value, list) else [value] if value else []:
            attributes.append(x509.NameAttribute(oid, item))
    return x509.Name(attributes)


def _san(args: dict[str, Any]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in args.get("dnsNames") or []]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in args.get("ipAddresses") or []]
    names += [x509.UniformResourceIdentifier(u) for u in args.get("uris") or []]
    return names


def _key_usage(uses: list[str]) -> x509.KeyUsage | None:
    flags = {name: False for name in KEY_USES.values()}
    for use in uses:
        if use in KEY_USES:
            flags[KEY_USES[use]] = True
    return x509.KeyUsage(**flags) if any(flags.values()) else None


def _sign(
    *,
    subject: x509.Name,
    public_key: Any,
    issuer: x509.Name,
    issuer_key: PrivateKey,
    args: dict[str, Any],
    san: list[x509.GeneralName],
    issuer_public_key: Any,
) -> SignedCert:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    not_after = now + dt.timedelta(hours=int(args["validityPeriodHours"]))
    is_ca = bool(args.get("isCaCertificate"))
    uses = list(args.get("allowedUses") or [])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    if not is_ca or issuer_public_key is not public_key:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public_key), critical=False
        )
    key_usage = _key_usage(uses)
    if key_usage is not None:
        builder = builder.add_extension(key_usage, critical=True)
    extended = [EXTENDED_USES[u] for u in uses if u in EXTENDED_USES]
    if extended:
        builder = builder.add_extension(x509.ExtendedKeyUsage(extended), critical=False)
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    algorithm = None if isinstance(issuer_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    cert = builder.sign(issuer_key, algorithm)
    return {
        "certPem": cert.public_bytes(serialization.Encoding.PEM).decode(),
        "validityStartTime": now.isoformat().replace("+00:00", "Z"),
        "validityEndTime": not_after.isoformat().replace("+00:00", "Z"),
        "readyForRenewal": False,
    }


def ready_for_renewal(outputs: dict[str, Any], inputs: dict[str, Any]) -> bool:
    """pulumi-tls replaces a certificate from ``earlyRenewalHours`` before its end on."""
    end = outputs.get("validityEndTime")
    if not isinstance(end, str) or not end:
        return False
    early = dt.timedelta(hours=float(inputs.get("earlyRenewalHours") or 0))
    return dt.datetime.now(dt.UTC) >= dt.datetime.fromisoformat(end.replace("Z", "+00:00")) - early


def self_signed_cert(args: dict[str, Any]) -> SignedCert:
    key = _load_key(args["privateKeyPem"])
    subject = _name(args.get("subject"))
    public = key.public_key()
    return _sign(
        subject=subject,
        public_key=public,
        issuer=subject,
        issuer_key=key,
        args=args,
        san=_san(args),
        issuer_public_key=public,
    )


def cert_request(args: dict[str, Any]) -> dict[str, str]:
    key = _load_key(args["privateKeyPem"])
    builder = x509.CertificateSigningRequestBuilder().subject_name(_name(args.get("subject")))
    san = _san(args)
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    csr = builder.sign(key, algorithm)
    return {"certRequestPem": csr.public_bytes(serialization.Encoding.PEM).decode()}


def locally_signed_cert(args: dict[str, Any]) -> SignedCert:
    csr = x509.load_pem_x509_csr(args["certRequestPem"].encode())
    ca_cert = x509.load_pem_x509_certificate(args["caCertPem"].encode())
    ca_key = _load_key(args["caPrivateKeyPem"])
    try:
        san = list(csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        san = []
    return _sign(
        subject=csr.subject,
        public_key=csr.public_key(),
        issuer=ca_cert.subject,
        issuer_key=ca_key,
        args=args,
        san=san,
        issuer_public_key=ca_key.public_key(),
    )
