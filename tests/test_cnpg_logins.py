"""Kubernetes' login roles under the mocks (issue 12): CloudNativePG managed roles give each
generation of secrets.rotation its own role `aixsss_g<N>` (two password slots, as Redis's),
keep the previous one while the clients roll and drop the one before at the next rotation; a
run-once Job, logging in as the new role, makes its sessions act as the owner before the
migrations (the real server's side: tests/test_cnpg_logins_servers.py)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import yaml
from crd_schema import validate
from harness import Deployment, Registration, reveal, run_program

from offline.render import render

CLUSTER = "kubernetes:postgresql.cnpg.io/v1:Cluster"
SECRET = "kubernetes:core/v1:Secret"
JOB = "kubernetes:batch/v1:Job"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"


def k8s(rotation: int, prior: Deployment | None = None) -> Deployment:
    return run_program("staging", overrides={"target": "kubernetes", "secrets.rotation": rotation}, prior=prior)


def cluster(d: Deployment) -> Registration:
    (found,) = d.of_type(CLUSTER)
    return found


def roles(d: Deployment) -> list[dict[str, Any]]:
    return cluster(d).plain["spec"]["managed"]["roles"]


def secret(d: Deployment, name: str) -> Registration:
    (found,) = [r for r in d.of_type(SECRET) if r.plain["metadata"]["name"] == name]
    return found


def named(d: Deployment, typ: str, name: str) -> Registration:
    (found,) = [r for r in d.of_type(typ) if r.name == name]
    return found


def client_login(d: Deployment, name: str) -> tuple[str, str]:
    url = urlsplit(reveal(secret(d, f"{name}-env").inputs)["stringData"]["DATABASE_URL"])
    assert url.username and url.password
    return unquote(url.username), unquote(url.password)


def test_each_rotation_adds_a_role_keeps_the_previous_and_drops_the_one_before() -> None:
    zero = k8s(0)
    one = k8s(1, prior=zero)
    two = k8s(2, prior=one)
    assert [(r["name"], r["ensure"]) for r in roles(zero)] == [("aixsss_g0", "present")]
    assert [(r["name"], r["ensure"]) for r in roles(one)] == [("aixsss_g1", "present"), ("aixsss_g0", "present")]
    assert [(r["name"], r["ensure"], r["login"]) for r in roles(two)] == [
        ("aixsss_g2", "present", True),
        ("aixsss_g1", "present", True),
        ("aixsss_g0", "present", False),
    ]
    for role in roles(two)[:2]:
        # A member of the NOLOGIN owner, nothing more; its password in its own basic-auth Secret.
        assert role["login"] is True and role["inRoles"] == ["aixsss"] and role["superuser"] is False
        generation = role["name"].rpartition("_")[2]
        login = secret(two, f"postgres-login-{generation}")
        assert role["passwordSecret"] == {"name": f"postgres-login-{generation}"}
        assert login.plain["type"] == "kubernetes.io/basic-auth"
        assert login.plain["metadata"]["labels"]["cnpg.io/reload"] == "true"
        assert reveal(login.inputs)["stringData"]["username"] == role["name"]
    # The one before last is kept without login, password or membership: a DROP ROLE that
    # fails later leaves nothing to log in with. No Secret holds its password any more.
    assert roles(two)[2] == {
        "name": "aixsss_g0", "ensure": "present", "login": False, "disablePassword": True, "inRoles": [],
    }  # fmt: skip
    assert not [r for r in two.of_type(SECRET) if r.plain["metadata"]["name"] == "postgres-login-g0"]
    # One rotation later it is dropped: the absent entry has nothing but its name (DROP ROLE).
    three = k8s(3, prior=two)
    assert roles(three)[2:] == [
        {"name": "aixsss_g1", "ensure": "present", "login": False, "disablePassword": True, "inRoles": []},
        {"name": "aixsss_g0", "ensure": "absent"},
    ]
    # A jump (3 to 9) leaves no retired role behind: every older generation stays listed as
    # absent, so g2 goes although 9 never listed it as the previous one.
    nine = k8s(9, prior=three)
    assert [(r["name"], r["ensure"]) for r in roles(nine)] == [
        ("aixsss_g9", "present"),
        ("aixsss_g8", "present"),
        ("aixsss_g7", "present"),
        *[(f"aixsss_g{g}", "absent") for g in range(6, -1, -1)],
    ]
    assert roles(nine)[2]["login"] is False
    # The previous generation's password is untouched by the rotation (its clients still use it).
    g1_before = reveal(secret(one, "postgres-login-g1").inputs)["stringData"]
    assert reveal(secret(two, "postgres-login-g1").inputs)["stringData"] == g1_before
    g2 = reveal(secret(two, "postgres-login-g2").inputs)["stringData"]
    assert g2["password"] != g1_before["password"]
    # The clients take the new generation's role and password.
    for name in ("api", "worker"):
        assert client_login(one, name) == ("aixsss_g1", g1_before["password"]), name
        assert client_login(two, name) == ("aixsss_g2", g2["password"]), name


def test_the_owner_never_logs_in_over_the_network_its_members_do() -> None:
    hba = cluster(k8s(1)).plain["spec"]["postgresql"]["pg_hba"]
    assert hba[:2] == ["hostssl all aixsss all reject", "hostssl aixsss +aixsss all scram-sha-256"]


def test_the_new_role_acts_as_the_owner_before_the_migrations_and_clients_start() -> None:
    d = k8s(1)
    act, migrate = named(d, JOB, "postgres-act-as-owner"), named(d, JOB, "api-migrate")
    assert d.depends_on(act, cluster(d)) and d.depends_on(migrate, act)
    for client in ("api", "worker"):
        assert d.depends_on(named(d, DEPLOYMENT, client), act), client
    container = act.plain["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["PGUSER"] == "aixsss_g1" and env["PGSSLMODE"] == "verify-full"
    # The audit output says what the Job does: a TLS client with a password, not a socket job.
    facts = reveal(d.outputs)["services"]["postgres-act-as-owner"]
    assert "verify-full" in facts["tls"] and "socket" not in facts["tls"], facts
    assert facts["auth"].startswith("scram-sha-256") and facts["talksTo"] == ["postgres"], facts
    docker = run_program("staging", overrides={"target": "docker", "secrets.rotation": 1})
    jobs = {n: f for n, f in reveal(docker.outputs)["services"].items() if n.startswith("postgres-")}
    assert jobs and all("Unix socket" in f["tls"] and f["talksTo"] == [] for f in jobs.values()), jobs
    assert env["ACT_AS_OWNER"] == "ALTER ROLE CURRENT_USER SET role = 'aixsss';"
    # The password from its file, never a plain or secretKeyRef environment variable.
    assert "PGPASSWORD" not in env and env["PGPASSWORD_FILE"] == "/etc/aixsss/env/PGPASSWORD"
    # The job fails unless a new session acts as the owner (PostgreSQL accepts the default of a
    # role that is no member, then ignores it).
    assert "SELECT current_user" in container["command"][-1] and "= aixsss ]" in container["command"][-1]
    # A new generation is a new Job (it runs again); an unchanged one is not.
    assert named(k8s(2), JOB, "postgres-act-as-owner").plain["metadata"]["name"] != act.plain["metadata"]["name"]
    assert named(k8s(1), JOB, "postgres-act-as-owner").plain["metadata"]["name"] == act.plain["metadata"]["name"]


def test_the_cluster_with_three_generations_matches_cloudnativepgs_crd(tmp_path: Path) -> None:
    """The rendered manifest (offline renderer: as the API server gets it) at rotation 2."""
    result = render("staging", "kubernetes", tmp_path, settings={"secrets.rotation": "2"})
    found = []
    for path in sorted((result.out / "kubernetes").rglob("*.yaml")):
        found += [o for o in yaml.safe_load_all(path.read_text()) if o and o["kind"] == "Cluster"]
    (obj,) = found
    assert [r["name"] for r in obj["spec"]["managed"]["roles"]] == ["aixsss_g2", "aixsss_g1", "aixsss_g0"]
    assert validate(obj).errors == []
    # The control: the validator bites on the managed roles' schema.
    bad = copy.deepcopy(obj)
    bad["spec"]["managed"]["roles"][2]["ensure"] = "gone"
    bad["spec"]["managed"]["roles"][0]["passwordSecret"] = {"secret": "postgres-login-g2"}
    errors = " ".join(validate(bad).errors)
    assert "gone" in errors and "name" in errors, errors
