"""The summary's warnings: plain-text flows inside the stack, and nothing from outside it."""

from __future__ import annotations

from pathlib import Path

from harness import GATEWAY_ADDRESSES, run_program

from offline import topology
from offline.render import Rendered, _warnings


def warnings_for(tmp_path: Path, stack: str, overrides: dict[str, str]) -> list[str]:
    deployment = run_program(stack, overrides=overrides)
    result = Rendered(tmp_path, deployment, topology.of(deployment))
    _warnings(result)
    return result.warnings


def test_the_gateway_is_outside_the_stack_and_edge_to_api_is_inside(tmp_path: Path) -> None:
    found = warnings_for(
        tmp_path, "prod", {"kubernetes.exposure": "gateway", "kubernetes.gatewayName": "public", **GATEWAY_ADDRESSES}
    )
    plain = [w for w in found if w.startswith("plain-text flow")]
    # The Gateway terminates TLS outside the stack; its plain hop to the edge is not "inside".
    assert not [w for w in plain if "Gateway" in w]
    # The control: the stack's own plain hops are still named.
    assert any(w.startswith("plain-text flow edge -> api:") for w in plain)
