"""The stack's internal CA and the certificates it issues (pulumi-tls)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_tls as tls

from components.config import StackConfig

SERVER_USES = ["digital_signature", "key_encipherment", "server_auth"]


@dataclass(frozen=True)
class Certificate:
    """A PEM certificate with its (secret) key, the CA that signed it, and what it names."""

    name: str
    common_name: str
    dns_names: list[str]
    cert_pem: pulumi.Output[str]
    key_pem: pulumi.Output[str]
    ca_pem: pulumi.Output[str]
    issuer: str
    not_after: pulumi.Output[str] = field(default_factory=lambda: pulumi.Output.from_input(""))


class InternalPki(pulumi.ComponentResource):
    """A CA per stack; leaf certificates for the data services and, in dev, the public host."""

    def __init__(self, name: str, config: StackConfig, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("aixsss:pki:InternalPki", name, None, opts)
        self._config = config
        self._child = pulumi.ResourceOptions(parent=self)
        self.ca_subject = f"AIXSSS {config.environment} internal CA"
        ca_key = tls.PrivateKey("ca", algorithm="ECDSA", ecdsa_curve="P256", opts=self._child)
        self._ca_key_pem = ca_key.private_key_pem
        ca = tls.SelfSignedCert(
            "ca",
            private_key_pem=ca_key.private_key_pem,
            is_ca_certificate=True,
            subject=tls.SelfSignedCertSubjectArgs(common_name=self.ca_subject, organization="AIXSSS"),
            # The CA outlives its leaves by a wide margin so renewals never race its expiry.
            validity_period_hours=config.tls.validity_hours * 5,
            early_renewal_hours=config.tls.early_renewal_hours,
            allowed_uses=["cert_signing", "crl_signing", "digital_signature"],
            opts=self._child,
        )
        self.ca_cert_pem: pulumi.Output[str] = ca.cert_pem
        self.ca_not_after: pulumi.Output[str] = ca.validity_end_time
        self.register_outputs({"caCertPem": ca.cert_pem})

    def issue(self, name: str, dns_names: list[str], ip_addresses: list[str] | None = None) -> Certificate:
        tls_config = self._config.tls
        key = tls.PrivateKey(f"{name}-key", algorithm="ECDSA", ecdsa_curve="P256", opts=self._child)
        request = tls.CertRequest(
            f"{name}-csr",
            private_key_pem=key.private_key_pem,
            dns_names=dns_names,
            ip_addresses=ip_addresses or [],
            subject=tls.CertRequestSubjectArgs(common_name=dns_names[0], organization="AIXSSS"),
            opts=self._child,
        )
        cert = tls.LocallySignedCert(
            f"{name}-cert",
            cert_request_pem=request.cert_request_pem,
            ca_private_key_pem=self._ca_key_pem,
            ca_cert_pem=self.ca_cert_pem,
            validity_period_hours=tls_config.validity_hours,
            early_renewal_hours=tls_config.early_renewal_hours,
            allowed_uses=SERVER_USES,
            opts=self._child,
        )
        return Certificate(
            name=name,
            common_name=dns_names[0],
            dns_names=dns_names,
            cert_pem=cert.cert_pem,
            key_pem=key.private_key_pem,
            ca_pem=self.ca_cert_pem,
            issuer=self.ca_subject,
            not_after=cert.validity_end_time,
        )
