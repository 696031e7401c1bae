"""scripts/restore-drill.sh without a Docker host: shellcheck finds nothing, and against a recording
stand-in for the docker client it restores with the options test_pitr proves (newest backup, no
repository access during recovery, no archiving), on the database's network with its config
volume read-only; starts the copy on no network without the repository keys; never puts a secret
on a command line; and removes its scratch containers and volume however it ends."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from rendering import tool

from offline.engine import ROOT

from .test_pitr import DRILL_RESTORE

SCRIPT = ROOT / "scripts" / "restore-drill.sh"
SECRETS = {
    "PGBACKREST_REPO1_S3_KEY": "AKDRILLKEY0000000001",
    "PGBACKREST_REPO1_S3_KEY_SECRET": "drill-secret-value-0123456789",
    # The bootstrap password of the superuser: the drill never uses it (peer through the socket).
    "POSTGRES_PASSWORD": "drill-db-password-9876543210",
}
CONTAINER_ENV = SECRETS | {
    "POSTGRES_USER": "postgres",
    "POSTGRES_DB": "aixsss",
    "PGBACKREST_CONFIG": "/etc/aixsss/pgbackrest.conf",
}

# The stand-in: records each call (argv and the variables it was given by name) and answers
# `inspect` like a daemon with a running aixsss-dev-postgres; FAIL_ON makes one call fail.
FAKE_DOCKER = r"""#!/usr/bin/env python3
import json, os, sys
args = sys.argv[1:]
names = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "-e" and "=" not in args[i + 1]]
with open(os.environ["DRILL_RECORD"], "a") as f:
    f.write(json.dumps({"argv": args, "env": {n: os.environ.get(n) for n in names}}) + "\n")
fail_on = os.environ.get("FAIL_ON")
if fail_on and fail_on in " ".join(args):
    sys.exit(1)
if args[0] == "inspect":
    if os.environ.get("NO_CONTAINER"):
        sys.exit(1)
    fmt = args[args.index("--format") + 1]
    if ".State.Running" in fmt:
        print("true")
    elif ".Config.Env" in fmt:
        print("\n".join(f"{k}={v}" for k, v in json.loads(os.environ["CONTAINER_ENV"]).items()))
    elif ".Mounts" in fmt:
        print("aixsss-dev-postgres-config-0badc0de")
    elif ".Networks" in fmt:
        print("aixsss-dev-backend")
    elif ".Image" in fmt:
        print("sha256:" + "ab" * 32)
elif args[0] == "exec" and "pg_is_in_recovery()" in " ".join(args):
    print("f")
"""


def drill(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], list[dict]]:
    fake = tmp_path / "docker"
    fake.write_text(FAKE_DOCKER)
    fake.chmod(0o755)
    record = tmp_path / "calls.jsonl"
    record.touch()
    run_env = {"PATH": os.environ["PATH"], "DOCKER": str(fake), "DRILL_RECORD": str(record),
               "CONTAINER_ENV": json.dumps(CONTAINER_ENV), "RECOVERY_TIMEOUT": "5"} | env  # fmt: skip
    done = subprocess.run(["bash", str(SCRIPT), "dev"], capture_output=True, text=True, env=run_env, timeout=60)
    return done, [json.loads(line) for line in record.read_text().splitlines()]


def runs(calls: list[dict]) -> dict[str, dict]:
    """`docker run` calls by the container name they create."""
    found = {}
    for call in calls:
        argv = call["argv"]
        if argv[0] == "run":
            found[argv[argv.index("--name") + 1]] = call
    return found


def test_shellcheck_finds_nothing() -> None:
    binary = tool("shellcheck", "/usr/bin/shellcheck")
    done = subprocess.run([binary, str(SCRIPT)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def test_the_drill_restores_offline_and_cleans_up(tmp_path: Path) -> None:
    done, calls = drill(tmp_path)
    assert done.returncode == 0, done.stderr
    by_name = runs(calls)
    restore = next(c for n, c in by_name.items() if n.endswith("-restore"))
    scratch = next(c for n, c in by_name.items() if n.endswith("-postgres"))
    argv = restore["argv"]
    # The options test_pitr restores with, offline; the database's network, image and config.
    assert argv[-len(DRILL_RESTORE) - 1 :] == [*DRILL_RESTORE, "restore"]
    assert "--stanza=aixsss" in argv and "--pg1-path=/var/lib/postgresql/data/pgdata" in argv
    assert argv[argv.index("--network") + 1] == "aixsss-dev-backend"
    assert "type=volume,source=aixsss-dev-postgres-config-0badc0de,target=/etc/aixsss,readonly" in argv
    assert "sha256:" + "ab" * 32 in argv
    passed = ("PGBACKREST_CONFIG", "PGBACKREST_REPO1_S3_KEY", "PGBACKREST_REPO1_S3_KEY_SECRET")
    assert restore["env"] == {k: CONTAINER_ENV[k] for k in passed}
    # The copy: no network, no repository keys, on the scratch volume.
    s = scratch["argv"]
    assert s[s.index("--network") + 1] == "none"
    assert not any(k.startswith("PGBACKREST") for k in scratch["env"])
    # initdb's defaults, not the stack's settings: hot standby off, or a primary with more
    # max_connections than 100 (prod: 200) aborts the recovery (the real-daemon tier runs prod).
    assert s[-7:-4] == ["postgres", "-c", "hot_standby=off"]
    # The stack's pg_hba.conf and pg_ident.conf (config volume, read-only): the owner by peer.
    assert s[-4:] == ["-c", "hba_file=/etc/aixsss/pg_hba.conf", "-c", "ident_file=/etc/aixsss/pg_ident.conf"]
    assert "type=volume,source=aixsss-dev-postgres-config-0badc0de,target=/etc/aixsss,readonly" in s
    assert not any(k == "PGPASSWORD" for c in calls for k in c["env"])
    volume = next(c["argv"][-1] for c in calls if c["argv"][:2] == ["volume", "create"])
    assert f"type=volume,source={volume},target=/var/lib/postgresql/data" in s
    # The check query ran, as the image's superuser (POSTGRES_USER, peer through the socket: the
    # owner of the data cannot log in), and pgbackrest info came from the running database.
    checks = [c for c in calls if c["argv"][0] == "exec" and '"_prisma_migrations"' in " ".join(c["argv"])]
    assert [c["env"] for c in checks] == [{"PGUSER": "postgres", "PGDATABASE": "aixsss"}]
    assert ["exec", "aixsss-dev-postgres", "pgbackrest", "--stanza=aixsss", "info"] in [c["argv"] for c in calls]
    # No secret value on any command line or in the output.
    text = json.dumps([c["argv"] for c in calls]) + done.stdout + done.stderr
    assert not any(value in text for value in SECRETS.values())
    # Cleanup last: both containers and the volume.
    assert calls[-2]["argv"][:2] == ["rm", "-f"] and set(calls[-2]["argv"][2:]) == set(by_name)
    assert calls[-1]["argv"] == ["volume", "rm", "-f", volume]


@pytest.mark.parametrize("failing", ["pgbackrest", "pg_is_in_recovery"])
def test_a_failed_drill_still_removes_its_scratch_volume(tmp_path: Path, failing: str) -> None:
    done, calls = drill(tmp_path, FAIL_ON=failing)
    assert done.returncode != 0
    volume = next(c["argv"][-1] for c in calls if c["argv"][:2] == ["volume", "create"])
    assert calls[-1]["argv"] == ["volume", "rm", "-f", volume]


def test_no_stack_container_creates_nothing(tmp_path: Path) -> None:
    done, calls = drill(tmp_path, NO_CONTAINER="1")
    assert done.returncode == 1 and "no container aixsss-dev-postgres" in done.stderr
    assert [c["argv"][0] for c in calls] == ["inspect"]
