"""The PolicyPack: each rule as a Pulumi policy. Building the pack serves it (and blocks)."""

from __future__ import annotations

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    PolicyPack,
    ReportViolation,
    ResourceValidation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidation,
    StackValidationArgs,
    StackValidationPolicy,
)

from aixsss_policy.resources import Resource
from aixsss_policy.rules import RULES, STACK_RULES, Rule, StackRule

PACK_NAME = "aixsss"
PROTECT_SCHEMA = PolicyConfigSchema(
    properties={"requireProtect": {"type": "boolean", "default": False}},
)


def resource_of(args: ResourceValidationArgs) -> Resource:
    opts = args.opts
    return Resource(args.resource_type, args.name, args.props, bool(opts and opts.protect), args.get_config() or {})


def resource_validator(rule: Rule) -> ResourceValidation:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        for message in rule.check(resource_of(args)):
            report_violation(message, None)

    return validate


def stack_validator(rule: StackRule) -> StackValidation:
    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        resources = [
            Resource(r.resource_type, r.name, r.props, bool(r.opts and r.opts.protect)) for r in args.resources
        ]
        for message in rule.check(resources):
            report_violation(message, None)

    return validate


def resource_policies() -> list[ResourceValidationPolicy]:
    return [
        ResourceValidationPolicy(
            name=rule.name,
            description=rule.description,
            remediation_steps=rule.remediation,
            validate=resource_validator(rule),
            config_schema=PROTECT_SCHEMA if rule.name == "stateful-resources-protected" else None,
        )
        for rule in RULES
    ]


def stack_policies() -> list[StackValidationPolicy]:
    return [
        StackValidationPolicy(
            name=rule.name,
            description=rule.description,
            remediation_steps=rule.remediation,
            validate=stack_validator(rule),
        )
        for rule in STACK_RULES
    ]


def build() -> PolicyPack:
    # Mandatory unless a stack's policy config says otherwise (config/dev.json: advisory).
    return PolicyPack(
        name=PACK_NAME,
        description="AIXSSS: the deployment guide's appendix E checklist and hardening advice.",
        enforcement_level=EnforcementLevel.MANDATORY,
        policies=[*resource_policies(), *stack_policies()],
    )
