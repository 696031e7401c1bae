"""The environment api and worker share; both validate it at start (zod schemas in the app)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components.config import Environment, StackConfig
from components.service import CA_PATH


@dataclass(frozen=True)
class AppConnections:
    database_url: pulumi.Output[str]
    redis_url: pulumi.Output[str]
    s3_endpoint: str
    s3_bucket: str
    s3_region: str
    s3_access_key: pulumi.Output[str]
    s3_secret_key: pulumi.Output[str]
    api_key_encryption_key: pulumi.Output[str]
    ca_pem: pulumi.Output[str]


def node_env(config: StackConfig) -> str:
    return "development" if config.environment is Environment.DEV else "production"


def shared_env(config: StackConfig, conn: AppConnections) -> dict[str, str]:
    return {
        "NODE_ENV": node_env(config),
        # api and worker must agree on the queue name, so it comes from one key.
        "AI_QUEUE_NAME": config.api.ai_queue_name,
        "S3_ENDPOINT": conn.s3_endpoint,
        "S3_BUCKET": conn.s3_bucket,
        "S3_REGION": conn.s3_region,
        "S3_FORCE_PATH_STYLE": "true",
        # Node trusts the internal CA for the S3 endpoint (Redis TLS is the tunnel's job).
        "NODE_EXTRA_CA_CERTS": CA_PATH,
    }


def shared_secret_env(conn: AppConnections) -> dict[str, pulumi.Output[str]]:
    return {
        "DATABASE_URL": conn.database_url,
        "REDIS_URL": conn.redis_url,
        "API_KEY_ENCRYPTION_KEY": conn.api_key_encryption_key,
        "S3_ACCESS_KEY_ID": conn.s3_access_key,
        "S3_SECRET_ACCESS_KEY": conn.s3_secret_key,
    }
