"""Entry point Pulumi runs for `--policy-pack policy`; the validators live in aixsss_policy."""

from aixsss_policy.pack import build

build()
