"""The aixsss policy pack: the deployment guide's checklist and hardening advice, enforced."""
