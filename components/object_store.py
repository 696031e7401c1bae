"""MinIO over HTTPS, plus a bootstrap job: the app bucket and a user allowed only that bucket,
the backups' bucket and a user allowed only that one, and versioning with a lifecycle rule on both.

Versioning, on the app's bucket and on the backups' too: with it an object overwritten or deleted
is kept as a non-current version, which a lifecycle rule expires after
``objectStore.noncurrentVersionDays``. Neither user may delete a version (their policies allow
s3:DeleteObject only and deny s3:DeleteObjectVersion), so a leaked key, a compromised api or a
compromised database host can hide objects behind delete markers but cannot destroy them within
that window. For the backups this is the point: pgBackRest and Barman Cloud expire their own
backups and WAL with the same DeleteObject a compromised host would use, so their retention alone
protects nothing against it. The cost is the window: what they expire stays N more days. Restore
a deleted repository with pgBackRest's ``--repo-target-time`` (2.54+, which reads versioned S3 as
of a time) or ``mc cp --recursive --rewind <age>`` (any client). The same rule removes a delete
marker once no version is left behind it, so listings do not fill with them.
"""

from __future__ import annotations

import hashlib
import json

import pulumi

from components.config import ObjectStoreSettings, StackConfig
from components.pki import Certificate
from components.platforms.base import Platform
from components.secrets import StackSecrets
from components.service import CA_PATH, Service
from components.spec import ConfigFile, Port, Probe, Security, ServiceSpec, Volume, secret_env

NAME = "minio"
API_PORT = 9000
CONSOLE_PORT = 9001
UID = 1000
CERTS_DIR = "/etc/aixsss/minio-certs"
POLICY_NAME = "aixsss-app"
BACKUP_POLICY_NAME = "aixsss-backups"
LIFECYCLE_RULE_ID = "expire-noncurrent-versions"


def bucket_policy(bucket: str) -> dict:
    """Least privilege for the applications: objects in their bucket, nothing else; never a
    version's removal. Silo requires s3:DeleteObjectVersion to delete a version (pgsty/silo's
    delete-version authorization); upstream MinIO lets s3:DeleteObject do it unless that action
    is explicitly denied, hence the Deny, which holds on either."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
                "Resource": [f"arn:aws:s3:::{bucket}"],
            },
            {
                "Effect": "Allow",
                "Action": [
                    "s3:GetObject",
                    "s3:PutObject",
                    "s3:DeleteObject",
                    "s3:AbortMultipartUpload",
                    "s3:ListMultipartUploadParts",
                ],
                "Resource": [f"arn:aws:s3:::{bucket}/*"],
            },
            {"Effect": "Deny", "Action": ["s3:DeleteObjectVersion"], "Resource": [f"arn:aws:s3:::{bucket}/*"]},
        ],
    }


def backup_policy(bucket: str) -> dict:
    """The backups' own user: read, write and expire its bucket (Barman Cloud and pgBackRest
    list, put, get and delete objects), and nothing else; the app's user cannot reach it."""
    return bucket_policy(bucket)


def _user_with_policy(policy: str, file: str, key: str, secret: str) -> list[str]:
    return [
        f"mc admin policy create root {policy} {file}",
        f'mc admin user add root "${key}" "${secret}"',
        f'mc admin policy attach root {policy} --user "${key}" || mc admin user info root "${key}" | grep -q {policy}',
    ]


def lifecycle(noncurrent_days: int) -> dict:
    """The bucket's whole lifecycle configuration, as `mc ilm rule import` reads it (minio-go's
    lifecycle JSON): non-current versions expire after ``noncurrent_days``; a delete marker with
    no version left behind it goes too."""
    return {
        "Rules": [
            {
                "ID": LIFECYCLE_RULE_ID,
                "Status": "Enabled",
                "Expiration": {"ExpiredObjectDeleteMarker": True},
                "NoncurrentVersionExpiration": {"NoncurrentDays": noncurrent_days},
            }
        ]
    }


def _versions(bucket: str, settings: ObjectStoreSettings) -> list[str]:
    # `mc ilm rule import` replaces the configuration (PutBucketLifecycleConfiguration), so a
    # second run leaves one rule; `mc ilm rule add` appends, and a second run would fail on the
    # duplicate ID. With versioning off the bucket is suspended, not left as it was, and the rule
    # stays: it expires the versions an earlier setting kept.
    return [
        f"mc version {'enable' if settings.versioning else 'suspend'} root/{bucket}",
        f"mc ilm rule import root/{bucket} <<'EOF'",
        json.dumps(lifecycle(settings.noncurrent_version_days)),
        "EOF",
    ]


def bootstrap_script(
    bucket: str, endpoint: str, backup_bucket: str | None = None, settings: ObjectStoreSettings | None = None
) -> str:
    # Idempotent: every step tolerates a second run, so a re-run release changes nothing.
    settings = settings or ObjectStoreSettings()  # the model's defaults
    backups = (
        [
            f"mc mb --ignore-existing root/{backup_bucket}",
            f"mc anonymous set none root/{backup_bucket}",
            *_versions(backup_bucket, settings),
            *_user_with_policy(
                BACKUP_POLICY_NAME, "/etc/aixsss/backup-policy.json", "BACKUP_ACCESS_KEY", "BACKUP_SECRET_KEY"
            ),
        ]
        if backup_bucket
        else []
    )
    return "\n".join(
        [
            "set -eu",
            f'mc alias set root {endpoint} "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" --api S3v4',
            f"mc mb --ignore-existing root/{bucket}",
            f"mc anonymous set none root/{bucket}",
            *_versions(bucket, settings),
            "mc admin policy create root " + POLICY_NAME + " /etc/aixsss/app-policy.json",
            'mc admin user add root "$APP_ACCESS_KEY" "$APP_SECRET_KEY"',
            f'mc admin policy attach root {POLICY_NAME} --user "$APP_ACCESS_KEY" || '
            f'mc admin user info root "$APP_ACCESS_KEY" | grep -q {POLICY_NAME}',
            *backups,
            "",
        ]
    )


class ObjectStore(Service):
    tls = "HTTPS (internal CA)"
    auth = "S3 signature; app user limited to its bucket"

    def __init__(
        self,
        config: StackConfig,
        platform: Platform,
        secrets: StackSecrets,
        certificate: Certificate,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("ObjectStore", NAME, opts)
        s = secrets
        root_user, root_password = s.minio_root_user, s.minio_root_password
        assert root_user is not None and root_password is not None  # generated whenever the store is bundled
        publish = config.docker.publish_data_ports
        self.bucket = config.object_store.bucket
        host = platform.dns_names(NAME)[0]
        self.endpoint = f"https://{host}:{API_PORT}"
        spec = ServiceSpec(
            name=NAME,
            image=config.images.minio,
            resources=config.object_store,
            security=Security(run_as_user=UID, run_as_group=UID),
            probe=Probe(
                command=["mc", "ready", "local", "--insecure"],
                http_path="/minio/health/live",
                port=API_PORT,
                scheme="HTTPS",
            ),
            args=[
                "server",
                "/data",
                "--address",
                f":{API_PORT}",
                "--console-address",
                f":{CONSOLE_PORT}",
                "--certs-dir",
                CERTS_DIR,
            ],
            env={"MC_HOST_local": f"https://localhost:{API_PORT}", "MINIO_BROWSER_REDIRECT": "off"},
            secret_env=secret_env({"MINIO_ROOT_USER": root_user, "MINIO_ROOT_PASSWORD": root_password}),
            # The server reads both from the files MINIO_ROOT_USER_FILE/_PASSWORD_FILE name.
            file_env=frozenset({"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"}),
            # The console is never published; in dev only the S3 API is, on loopback.
            ports=[
                Port(
                    "s3",
                    API_PORT,
                    published=API_PORT if publish else None,
                    host_ip="127.0.0.1",
                    tls=True,
                    auth="sigv4",
                ),
                Port("console", CONSOLE_PORT, admin=True, tls=True, auth="password"),
            ],
            volumes=[Volume("data", "/data", config.object_store.storage_gb)],
            files=[
                ConfigFile(f"{CERTS_DIR}/public.crt", certificate.cert_pem),
                ConfigFile(f"{CERTS_DIR}/CAs/ca.crt", certificate.ca_pem),
                ConfigFile(f"{CERTS_DIR}/private.key", certificate.key_pem, secret=True, mode=0o600, owner=UID),
            ],
        )
        self._place(platform, spec, [])
        policy = json.dumps(bucket_policy(self.bucket), indent=2)
        backup_bucket = config.backup.bucket if config.backup.enabled else None
        script = bootstrap_script(self.bucket, self.endpoint, backup_bucket, config.object_store)
        backup_policy_json = json.dumps(backup_policy(backup_bucket), indent=2) if backup_bucket else ""
        release = hashlib.sha256(
            f"{config.images.minio_client}\n{script}\n{policy}\n{backup_policy_json}\n{config.secrets.rotation}".encode()
        ).hexdigest()
        self.bootstrap_spec = ServiceSpec(
            name="minio-bootstrap",
            image=config.images.minio_client,
            resources=config.object_store.model_copy(update={"cpu_millis": 100, "memory_mb": 128}),
            security=Security(run_as_user=UID, run_as_group=UID),
            probe=None,
            command=["/bin/sh", "/etc/aixsss/bootstrap.sh"],
            env={"MC_CONFIG_DIR": "/tmp/mc", "SSL_CERT_FILE": CA_PATH},
            secret_env=secret_env(
                {
                    "MINIO_ROOT_USER": root_user,
                    "MINIO_ROOT_PASSWORD": root_password,
                    "APP_ACCESS_KEY": s.minio_app_access_key,
                    "APP_SECRET_KEY": s.minio_app_secret_key,
                    **(
                        {"BACKUP_ACCESS_KEY": s.backup_access_key, "BACKUP_SECRET_KEY": s.backup_secret_key}
                        if backup_bucket
                        else {}
                    ),
                }
            ),
            files=[
                ConfigFile("/etc/aixsss/bootstrap.sh", script),
                ConfigFile("/etc/aixsss/app-policy.json", policy),
                *([ConfigFile("/etc/aixsss/backup-policy.json", backup_policy_json)] if backup_bucket else []),
                ConfigFile(CA_PATH, certificate.ca_pem),
            ],
            talks_to=(NAME,),
            run_once=True,
            release=release,
        )
        self.bootstrap = platform.place(self.bootstrap_spec, self, self.placement.ready)
        self.bootstrap_script = script
        self.app_policy = policy

    @property
    def ready(self) -> list[pulumi.Resource]:
        # Ready for the apps only once the bucket and the app user exist.
        return self.bootstrap.ready
