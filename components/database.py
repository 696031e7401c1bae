"""PostgreSQL 16: TLS required, scram-sha-256 only, reachable from api/worker/migrations."""

from __future__ import annotations

import pulumi

from components.conf import postgres
from components.conf.urls import url_quote
from components.config import StackConfig
from components.pki import Certificate
from components.platforms.base import Platform
from components.service import CA_PATH, TLS_DIR, Service
from components.spec import ConfigFile, Port, Probe, Security, ServiceSpec, Volume, secret_env

NAME = "postgres"
DATABASE = "aixsss"
USER = "aixsss"
PORT = 5432
UID = 999  # the image's postgres user


class Database(Service):
    tls = "required (hostssl only, TLS 1.2+)"
    auth = "scram-sha-256 password"

    def __init__(
        self,
        config: StackConfig,
        platform: Platform,
        password: pulumi.Output[str],
        certificate: Certificate,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("Database", NAME, opts)
        settings = postgres.PostgresSettings(
            cert_path=f"{TLS_DIR}/server.crt",
            key_path=f"{TLS_DIR}/server.key",
            hba_path="/etc/aixsss/pg_hba.conf",
            max_connections=config.database.max_connections,
            # The config model's value: its memory rule checks the same number.
            shared_buffers_mb=config.database.shared_buffers_mb,
        )
        self.settings = settings
        self.postgresql_conf = postgres.render_conf(settings)
        self.pg_hba_conf = postgres.render_hba(settings)
        publish = config.docker.publish_data_ports
        spec = ServiceSpec(
            name=NAME,
            image=config.images.postgres,
            resources=config.database,
            security=Security(run_as_user=UID, run_as_group=UID, tmpfs=("/tmp", "/var/run/postgresql")),
            probe=Probe(command=["pg_isready", "-U", USER, "-d", DATABASE], start_period_seconds=30),
            args=["postgres", "-c", "config_file=/etc/aixsss/postgresql.conf"],
            env={
                "POSTGRES_DB": DATABASE,
                "POSTGRES_USER": USER,
                "PGDATA": "/var/lib/postgresql/data/pgdata",
                "POSTGRES_INITDB_ARGS": "--auth-local=scram-sha-256 --auth-host=scram-sha-256",
            },
            secret_env=secret_env({"POSTGRES_PASSWORD": password}),
            ports=[
                Port(
                    "postgres",
                    PORT,
                    published=PORT if publish else None,
                    host_ip="127.0.0.1",
                    tls=True,
                    auth="scram-sha-256",
                )
            ],
            volumes=[Volume("data", "/var/lib/postgresql/data", config.database.storage_gb)],
            files=[
                ConfigFile("/etc/aixsss/postgresql.conf", self.postgresql_conf),
                ConfigFile(settings.hba_path, self.pg_hba_conf),
                ConfigFile(settings.cert_path, certificate.cert_pem),
                ConfigFile(CA_PATH, certificate.ca_pem),
                # Postgres refuses a key readable by others.
                ConfigFile(settings.key_path, certificate.key_pem, secret=True, mode=0o600, owner=UID),
            ],
        )
        self._place(platform, spec, [])
        host = platform.dns_names(NAME)[0]
        # Prisma's TLS dialect: sslcert is the CA that must have signed the server certificate.
        # connection_limit caps each process's pool so the stack fits max_connections (a config
        # rule checks the sum); Prisma percent-decodes the password, so any character is safe.
        query = (
            f"sslmode=require&sslaccept=strict&sslcert={CA_PATH}&connection_limit={config.database.connection_limit}"
        )
        self.url: pulumi.Output[str] = pulumi.Output.secret(
            pulumi.Output.concat(
                f"postgresql://{USER}:",
                pulumi.Output.from_input(password).apply(url_quote),
                f"@{host}:{PORT}/{DATABASE}?{query}",
            )
        )
