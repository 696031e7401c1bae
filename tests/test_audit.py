"""What auditors read: the stack outputs (audit.json) with the numbers `pulumi stack output
--json` prints, and a checklist whose every reason is checked against the declared resources."""

from __future__ import annotations

import json
from typing import Any

import pytest
from rendering import rendered

from offline.engine import SECRET_KEY, SECRET_SIG, integral, reveal


def _floats(value: Any, path: str = "") -> list[str]:
    if isinstance(value, dict):
        return [f for k, v in value.items() for f in _floats(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [f for i, v in enumerate(value) for f in _floats(v, f"{path}[{i}]")]
    return [f"{path}={value}"] if isinstance(value, float) else []


def test_integral_makes_whole_floats_ints_and_leaves_the_rest() -> None:
    secret = {SECRET_KEY: SECRET_SIG, "value": {"port": 5432.0}}
    given = {"replicas": 3.0, "ratio": 2.5, "flag": True, "ports": [80.0, 0.5], "url": secret, "name": "3.0"}
    got = integral(given)
    assert got == {"replicas": 3, "ratio": 2.5, "flag": True, "ports": [80, 0.5], "url": secret, "name": "3.0"}
    assert type(got["replicas"]) is int and type(got["ports"][0]) is int and type(got["url"]["value"]["port"]) is int
    # The negative control: a fraction stays a float, and a bool is not turned into 1.
    assert type(got["ratio"]) is float and type(got["ports"][1]) is float and got["flag"] is True
    assert got["url"][SECRET_KEY] == SECRET_SIG


@pytest.mark.parametrize("stack, target", [("prod", "kubernetes"), ("dev", "docker")])
def test_outputs_print_whole_numbers_as_integers(
    stack: str, target: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    result = rendered(tmp_path_factory.getbasetemp() / stack, stack, target)
    # Every number the program exports is whole, so none may be a float in either view.
    assert not _floats(reveal(result.deployment.outputs))
    text = (result.out / "audit.json").read_text()
    audit = json.loads(text)
    assert not _floats(audit)
    api = audit["services"]["api"]
    expected = {"prod": 3, "dev": 1}[stack]
    assert type(api["replicas"]) is int and api["replicas"] == expected
    assert f'"replicas": {expected},' in text and f'"replicas": {expected}.0' not in text
    assert type(api["limits"]["memoryMb"]) is int
