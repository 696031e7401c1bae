"""The AIXSSS stack program: config, secrets, certificates, service specs and platforms."""
