"""The applier: its mapping to Engine API bodies (no daemon), then the real daemon.

The daemon tests run when AIXSSS_TEST_DOCKER_HOST names a dockerd (skipped otherwise, failed under
CI). They create only objects named applier-test-* and remove only those.
"""

from __future__ import annotations

import base64
import io
import os
import secrets
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from offline.engine import Deployment, Registration, run_program
from tests.realdocker import applier as A
from tests.realdocker.applier import Applier, ApplyError, UnmappedInput
from tests.realdocker.images import APP_OVERRIDES, Docker, ensure_base

PREFIX = "applier-test-"
TEST_IMAGE = "aixsss-test/debian:bookworm"
STACK_URN = "urn:pulumi:test::applier::pulumi:pulumi:Stack::applier-test"

# --------------------------------------------------------------------------------------------
# Mapping (no daemon)
# --------------------------------------------------------------------------------------------

REPRESENTATIVE: dict[str, Any] = {
    "name": "svc",
    "image": "sha256:abc",
    "entrypoints": ["/bin/sh", "-c"],
    "command": ["sleep 1"],
    "envs": ["A=1", "B=2"],
    "user": "1000:1000",
    "readOnly": True,
    "tmpfs": {"/tmp": "rw,noexec,nosuid,size=64m"},
    "capabilities": {"drops": ["ALL"], "adds": ["NET_BIND_SERVICE"]},
    "securityOpts": ["no-new-privileges:true"],
    "memory": 128.0,  # protobuf numbers arrive as doubles
    "memorySwap": 128.0,
    "cpus": "0.25",
    "healthcheck": {
        "tests": ["CMD", "true"],
        "interval": "10s",
        "timeout": "1m30s",
        "startPeriod": "500ms",
        "startInterval": "2s",
        "retries": 5.0,
    },
    "wait": True,
    "waitTimeout": 180.0,
    "attach": False,
    "mustRun": True,
    "logs": False,
    "restart": "unless-stopped",
    "logDriver": "json-file",
    "logOpts": {"max-size": "10m", "max-file": "3"},
    "ulimits": [{"name": "nofile", "soft": 1024.0, "hard": 2048.0}],
    "stopTimeout": 20.0,
    "networksAdvanced": [{"name": "net-a", "aliases": ["svc"]}, {"name": "net-b", "aliases": ["svc", "s"]}],
    "ports": [{"internal": 5432.0, "external": 15432.0, "ip": "127.0.0.1"}, {"internal": 8080.0}],
    "volumes": [
        {"volumeName": "data", "containerPath": "/data"},
        {"volumeName": "certs", "containerPath": "/certs", "readOnly": True},
    ],
    "labels": [{"label": "managed-by", "value": "pulumi"}],
    "uploads": [{"file": "/data/x", "content": "x", "permissions": "0400", "owner": "1000"}],
}


def test_container_body_puts_each_input_where_the_provider_does() -> None:
    body = A.container_create_body("svc", REPRESENTATIVE)
    host = body["HostConfig"]
    assert body["Image"] == "sha256:abc"
    assert body["Entrypoint"] == ["/bin/sh", "-c"] and body["Cmd"] == ["sleep 1"]
    assert body["Env"] == ["A=1", "B=2"] and body["User"] == "1000:1000"
    assert body["Labels"] == {"managed-by": "pulumi"}
    assert body["StopTimeout"] == 20
    assert body["Healthcheck"] == {
        "Test": ["CMD", "true"],
        "Interval": 10 * 10**9,
        "Timeout": 90 * 10**9,
        "StartPeriod": 500 * 10**6,
        "StartInterval": 2 * 10**9,
        "Retries": 5,
    }
    assert body["ExposedPorts"] == {"5432/tcp": {}, "8080/tcp": {}}
    # external unset is 0 in Terraform (a random port), ip defaults to 0.0.0.0.
    assert host["PortBindings"] == {
        "5432/tcp": [{"HostIp": "127.0.0.1", "HostPort": "15432"}],
        "8080/tcp": [{"HostIp": "0.0.0.0", "HostPort": "0"}],
    }
    # Volumes are binds, with Config.Volumes naming the paths (volumeSetToDockerVolumes).
    assert host["Binds"] == ["data:/data:rw", "certs:/certs:ro"]
    assert body["Volumes"] == {"/data": {}, "/certs": {}}
    assert host["Memory"] == host["MemorySwap"] == 128 * 1024 * 1024
    assert host["NanoCpus"] == 250_000_000
    assert host["ReadonlyRootfs"] is True
    assert host["Tmpfs"] == {"/tmp": "rw,noexec,nosuid,size=64m"}
    assert host["CapAdd"] == ["NET_BIND_SERVICE"] and host["CapDrop"] == ["ALL"]
    assert host["SecurityOpt"] == ["no-new-privileges:true"]
    assert host["RestartPolicy"] == {"Name": "unless-stopped", "MaximumRetryCount": 0}
    assert host["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}}
    assert host["Ulimits"] == [{"Name": "nofile", "Soft": 1024, "Hard": 2048}]
    # Always sent by Create: init false, no auto-remove, network_mode's default.
    assert host["Init"] is False and host["AutoRemove"] is False and host["NetworkMode"] == "bridge"
    # networks_advanced is not in the create request at all...
    assert body["NetworkingConfig"] == {}


def test_every_network_is_connected_after_create_the_first_too() -> None:
    attachments = A.network_attachments(REPRESENTATIVE)
    assert [name for name, _ in attachments] == ["net-a", "net-b"]
    assert attachments[1][1]["Aliases"] == ["svc", "s"]


def test_unknown_and_unmapped_inputs_raise_with_resource_and_key() -> None:
    with pytest.raises(UnmappedInput) as raised:
        A.container_create_body("svc", {**REPRESENTATIVE, "someNewField": 1})
    assert (raised.value.resource, raised.value.key) == ("svc", "someNewField")
    with pytest.raises(UnmappedInput, match="gpus"):
        A.container_create_body("svc", {**REPRESENTATIVE, "gpus": "all"})
    with pytest.raises(UnmappedInput, match="scope"):
        A.network_create_body("net", {"name": "n", "scope": "swarm"})


def test_network_and_volume_bodies() -> None:
    labels = [{"label": "managed-by", "value": "pulumi"}]
    body = A.network_create_body("net", {"name": "n", "driver": "bridge", "internal": True, "labels": labels})
    assert body == {
        "Name": "n",
        "CheckDuplicate": True,
        "Driver": "bridge",
        "Internal": True,
        "Labels": {"managed-by": "pulumi"},
        "IPAM": {"Driver": "default"},  # ipam_driver's schema default, always sent
    }
    assert A.volume_create_body("vol", {"name": "v", "labels": labels}) == {
        "Name": "v",
        "Labels": {"managed-by": "pulumi"},
    }


def _tar_member(archive: bytes) -> tuple[tarfile.TarInfo, bytes]:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        (info,) = tar.getmembers()
        data = tar.extractfile(info)
        assert data is not None
        return info, data.read()


def test_upload_tar_header_as_the_provider_builds_it() -> None:
    info, data = _tar_member(A.upload_tar({"file": "/etc/app/x.conf", "content": "héllo", "permissions": "0640"}))
    assert (info.name, info.mode, info.uid, info.gid, data) == ("/etc/app/x.conf", 0o640, 0, 0, "héllo".encode())
    info, _ = _tar_member(A.upload_tar({"file": "/x", "content": "x", "executable": True}))
    assert info.mode == 0o744
    info, data = _tar_member(A.upload_tar({"file": "/x", "contentBase64": base64.b64encode(b"\0\1").decode()}))
    assert (info.mode, data) == (0o644, b"\0\1")
    info, _ = _tar_member(A.upload_tar({"file": "/x", "content": "x", "owner": "1000", "group": "2000"}))
    assert (info.uid, info.gid) == (1000, 2000)
    with pytest.raises(ApplyError, match="only one of"):
        A.upload_tar({"file": "/x", "content": "x", "contentBase64": "eA=="})
    with pytest.raises(ApplyError, match="must be set"):
        A.upload_tar({"file": "/x"})


def test_diff_force_new_replaces_and_the_rest_updates() -> None:
    base = {"name": "c", "image": "sha256:a", "envs": ["A=1", "B=2"], "memory": 64, "mustRun": True}
    assert A.diff(A.CONTAINER, base, {**base, "envs": ["B=2", "A=1"]})[0] == "same"  # a set
    assert A.diff(A.CONTAINER, base, {k: v for k, v in base.items() if k != "mustRun"})[0] == "same"  # default
    assert A.diff(A.CONTAINER, base, {**base, "image": "sha256:b"}) == ("replace", {"image"})
    assert A.diff(A.CONTAINER, base, {**base, "memory": 128}) == ("update", {"memory"})
    # Neither ForceNew nor sent by resourceDockerContainerUpdate: the container keeps the old ones.
    assert A.diff(A.CONTAINER, base, {**base, "healthcheck": {"tests": ["CMD", "true"]}})[0] == "update"
    assert A.diff(A.CONTAINER, base, {**base, "tmpfs": {"/tmp": "rw"}})[0] == "update"


def test_replacement_ordering() -> None:
    def reg(typ: str, inputs: dict[str, Any], dbr: bool | None = None) -> Registration:
        return _reg(typ, "r", inputs, delete_before_replace=dbr)

    assert A.delete_before_replace(reg(A.CONTAINER, {"name": "c"}))  # DeleteBeforeReplace: true
    assert A.delete_before_replace(reg(A.NETWORK, {"name": "n"}))  # explicit autonamed name
    assert not A.delete_before_replace(reg(A.NETWORK, {}))  # autonamed: create first
    assert not A.delete_before_replace(reg(A.IMAGE, {"name": "i"}))  # name is not autonamed
    assert A.delete_before_replace(reg(A.IMAGE, {"name": "i"}, dbr=True))
    # The resource option, when set, wins over the provider either way.
    assert not A.delete_before_replace(reg(A.CONTAINER, {"name": "c"}, dbr=False))
    assert not A.delete_before_replace(reg(A.VOLUME, {"name": "v"}, dbr=False))


def test_old_states_are_deleted_dependents_first_by_their_own_dependencies(tmp_path: Path) -> None:
    """ScheduleDeletes: an old api (replaced create-first) depended on the old tunnel whose
    namespace it joined, and an old front on the old api; they go front, api, tunnel, whatever
    order they were condemned or created in. A state the program dropped goes in the same pass."""
    state = A.State(tmp_path / "state.json")
    urn = {n: f"urn:pulumi:test::applier::{A.CONTAINER}::{n}" for n in ("tunnel", "api", "front", "gone")}
    state.entries[urn["tunnel"]] = A.Entry(A.CONTAINER, "tunnel", {}, "t2")  # the new ones
    state.entries[urn["api"]] = A.Entry(A.CONTAINER, "api", {}, "a2", [urn["tunnel"]])
    state.entries[urn["front"] + "#old-f1"] = A.Entry(A.CONTAINER, "front", {}, "f1", [urn["api"]])
    state.entries[urn["api"] + "#old-a1"] = A.Entry(A.CONTAINER, "api", {}, "a1", [urn["tunnel"]])
    state.entries[urn["tunnel"] + "#old-t1"] = A.Entry(A.CONTAINER, "tunnel", {}, "t1")
    state.entries[urn["gone"]] = A.Entry(A.CONTAINER, "gone", {}, "g1", [urn["tunnel"]])
    condemned = {u for u in state.entries if "#old-" in u}
    order = [state.entries[u].id for u in state.old_order(condemned, {urn["gone"]})]
    assert order.index("f1") < order.index("a1") < order.index("t1"), order
    assert order.index("g1") < order.index("t1") and set(order) == {"f1", "a1", "t1", "g1"}, order


def test_go_durations_and_cpus() -> None:
    assert A.go_duration_ns("0") == 0 and A.go_duration_ns("1h2m3.5s") == (3723 * 10**9 + 5 * 10**8)
    assert A.go_duration_ns("250us") == 250_000
    with pytest.raises(ApplyError):
        A.go_duration_ns("10")
    assert A.parse_cpus("1.5") == 1_500_000_000
    with pytest.raises(ApplyError, match="too precise"):
        A.parse_cpus("0.0000000001")


@pytest.fixture(scope="module")
def dev() -> Deployment:
    return run_program("dev", overrides=APP_OVERRIDES)


def test_a_joined_namespace_names_the_owner_by_its_real_id() -> None:
    """network_mode container:<id> (the Redis tunnel's namespace): the owner's real id goes in,
    in HostConfig.NetworkMode; no network is connected (networks_advanced unset); StopTimeout is
    Config's, as Create sets it."""
    real = {"api-redis-tls-id": "0123abcd"}
    inputs = A._substitute({"networkMode": "container:api-redis-tls-id", "image": "x", "stopTimeout": 180.0}, real)
    assert inputs["networkMode"] == "container:0123abcd"
    body = A.container_create_body("api", inputs)
    assert body["HostConfig"]["NetworkMode"] == "container:0123abcd" and body["StopTimeout"] == 180
    assert A.network_attachments(inputs) == []
    # A string that merely contains a mock id elsewhere is left alone.
    assert A._substitute("x-container:api-redis-tls-id", real) == "x-container:api-redis-tls-id"


def test_every_docker_input_of_the_dev_stack_is_mapped(dev: Deployment) -> None:
    """A field the program starts using without a mapping here fails loudly, not silently."""
    from offline.engine import reveal

    for reg in dev.registrations:
        inputs = reveal(reg.inputs)
        if reg.type == A.CONTAINER:
            A.container_create_body(reg.name, inputs)
            A.network_attachments(inputs)
            for upload in inputs.get("uploads") or []:
                A.upload_tar(upload)
        elif reg.type == A.NETWORK:
            A.network_create_body(reg.name, inputs)
        elif reg.type == A.VOLUME:
            A.volume_create_body(reg.name, inputs)


def test_dev_stack_order_puts_each_resource_after_its_dependencies(dev: Deployment) -> None:
    order = A.apply_order(dev)
    position = {reg.urn: i for i, (reg, _) in enumerate(order)}
    assert {reg.type for reg, _ in order} == set(A.APPLIED)
    for reg, deps in order:
        assert all(position[d] < position[reg.urn] for d in deps), reg.name
        if reg.type == A.CONTAINER:
            image = next(r for r in dev.registrations if r.urn in deps and r.type == A.IMAGE)
            assert image.outputs["imageId"] == reg.inputs["image"]


# --------------------------------------------------------------------------------------------
# The real daemon
# --------------------------------------------------------------------------------------------


def _reg(
    typ: str,
    name: str,
    inputs: dict[str, Any],
    deps: list[Registration] | None = None,
    outputs: dict[str, Any] | None = None,
    *,
    delete_before_replace: bool | None = None,
) -> Registration:
    return Registration(
        type=typ,
        name=name,
        urn=f"urn:pulumi:test::applier::{typ}::{name}",
        parent=STACK_URN,
        custom=True,
        protect=False,
        retain_on_delete=False,
        delete_before_replace=delete_before_replace,
        dependencies=[d.urn for d in deps or []],
        inputs=inputs,
        outputs=outputs if outputs is not None else dict(inputs),
    )


def _deployment(regs: list[Registration]) -> Deployment:
    return Deployment(stack="test", config={}, registrations=regs, outputs={})


@pytest.fixture(scope="module")
def api(image_cache: Path) -> Iterator[docker.APIClient]:
    host = os.environ.get("AIXSSS_TEST_DOCKER_HOST")
    if not host:
        if os.environ.get("CI"):
            pytest.fail("AIXSSS_TEST_DOCKER_HOST is not set: CI must run the real-daemon tests")
        pytest.skip("AIXSSS_TEST_DOCKER_HOST is not set")
    client = docker.APIClient(base_url=host)
    # The plain Debian base of the stand-ins (images.py), under the name these tests use.
    base = ensure_base(Docker(host), "bookworm", image_cache)
    client.tag(base, *TEST_IMAGE.split(":"))
    _sweep(client)
    yield client
    _sweep(client)


def _sweep(client: docker.APIClient) -> None:
    """Remove what a failed run left behind: only objects named applier-test-*."""
    for c in client.containers(all=True, filters={"name": PREFIX}):
        if any(n.lstrip("/").startswith(PREFIX) for n in c["Names"]):
            client.remove_container(c["Id"], force=True)
    for v in client.volumes(filters={"name": PREFIX}).get("Volumes") or []:
        if v["Name"].startswith(PREFIX):
            client.remove_volume(v["Name"], force=True)
    for n in client.networks(names=[PREFIX]):
        if n["Name"].startswith(PREFIX):
            client.remove_network(n["Id"])


@pytest.fixture
def applier(api: docker.APIClient, tmp_path: Path) -> Iterator[Applier]:
    applier = Applier(os.environ["AIXSSS_TEST_DOCKER_HOST"], tmp_path / "state.json")
    yield applier
    applier.destroy()


HARDENED: dict[str, Any] = {
    "readOnly": True,
    "user": "1000:1000",
    "capabilities": {"drops": ["ALL"]},
    "securityOpts": ["no-new-privileges:true"],
    "memory": 64.0,
    "memorySwap": 64.0,
    "cpus": "0.5",
    "logDriver": "json-file",
    "logOpts": {"max-size": "1m"},
}


def _stack(env: str = "A=1", net_labels: str = "one", with_job: bool = True, memory: float = 64.0) -> Deployment:
    """A network, a volume, files carried into it, a run-once job and a healthy service."""
    image = _reg(A.IMAGE, "img", {"name": TEST_IMAGE, "keepLocally": True})
    image.outputs = {**image.inputs, "imageId": f"sha256:{secrets.token_hex(32)}"}  # the mock's, new each run
    net = _reg(
        A.NETWORK,
        "net",
        {"name": f"{PREFIX}net", "driver": "bridge", "labels": [{"label": "v", "value": net_labels}]},
    )
    vol = _reg(A.VOLUME, "data", {"name": f"{PREFIX}data"})
    image_id = image.outputs["imageId"]
    volume = [{"volumeName": f"{PREFIX}data", "containerPath": "/data"}]
    carrier = _reg(
        A.CONTAINER,
        "carrier",
        {
            "name": f"{PREFIX}carrier",
            "image": image_id,
            "start": False,
            "mustRun": False,
            "networkMode": "none",
            "entrypoints": ["true"],
            "volumes": volume,
            "uploads": [
                {"file": "/data/hello.txt", "content": "hello", "permissions": "0640", "owner": "1000", "group": "1000"}
            ],
        },
        [image, vol],
    )
    job = _reg(
        A.CONTAINER,
        "job",
        {
            **HARDENED,
            "name": f"{PREFIX}job",
            "image": image_id,
            "entrypoints": ["sh", "-c", "cat /data/hello.txt; stat -c ' %a %u %g' /data/hello.txt; exit 3"],
            "volumes": [{**volume[0], "readOnly": True}],
            "networkMode": "none",
            "attach": True,
            "logs": True,
            "mustRun": False,
            "restart": "no",
        },
        [image, vol, carrier],
    )
    svc = _reg(
        A.CONTAINER,
        "svc",
        {
            **HARDENED,
            "memory": memory,
            "memorySwap": memory,
            "name": f"{PREFIX}svc",
            "image": image_id,
            "entrypoints": ["sh", "-c", "touch /tmp/ready; exec sleep 3600"],
            "envs": [env],
            "tmpfs": {"/tmp": "rw,noexec,nosuid,size=1m"},
            "healthcheck": {"tests": ["CMD", "test", "-f", "/tmp/ready"], "interval": "1s", "retries": 3.0},
            "wait": True,
            "waitTimeout": 60.0,
            "restart": "unless-stopped",
            "networksAdvanced": [{"name": f"{PREFIX}net", "aliases": ["svc"]}],
            "ports": [{"internal": 8080.0, "ip": "127.0.0.1"}],
            "labels": [{"label": "managed-by", "value": "pulumi"}],
        },
        [image, net, *([job] if with_job else [])],
    )
    return _deployment([image, net, vol, carrier, *([job] if with_job else []), svc])


def _ids(api: docker.APIClient) -> dict[str, str]:
    return {c["Names"][0].lstrip("/"): c["Id"] for c in api.containers(all=True, filters={"name": PREFIX})}


def test_apply_is_ordered_healthy_idempotent_and_replaces_deletes_destroys(
    api: docker.APIClient, applier: Applier
) -> None:
    first = applier.apply(_stack())
    assert first.created == ["img", "net", "data", "carrier", "job", "svc"]
    assert first.started == ["carrier", "job", "svc"]
    # The provider does not fail on a run-once container's non-zero exit; the code is reported.
    assert first.exit_codes["job"] == 3
    job_logs = applier.state.entries[_reg(A.CONTAINER, "job", {}).urn].outputs["containerLogs"]
    assert job_logs.split() == ["hello", "640", "1000", "1000"]  # tar header mode and owner kept
    svc = api.inspect_container(f"{PREFIX}svc")
    assert svc["State"]["Health"]["Status"] == "healthy"
    assert set(svc["NetworkSettings"]["Networks"]) == {f"{PREFIX}net"}  # bridge disconnected
    assert "svc" in svc["NetworkSettings"]["Networks"][f"{PREFIX}net"]["Aliases"]
    host = svc["HostConfig"]
    assert (host["Memory"], host["NanoCpus"], host["ReadonlyRootfs"]) == (64 * 1024 * 1024, 500_000_000, True)
    assert host["PortBindings"]["8080/tcp"][0]["HostIp"] == "127.0.0.1"
    ids = _ids(api)

    # A rerun of the program (new mock image ids) changes nothing.
    again = applier.apply(_stack())
    assert (again.created, again.replaced, again.deleted, again.started) == ([], [], [], [])
    assert again.unchanged == first.created
    assert _ids(api) == ids

    # memory is not ForceNew: resourceDockerContainerUpdate changes it in place.
    updated = applier.apply(_stack(memory=96.0))
    assert updated.updated == ["svc"] and updated.replaced == []
    assert api.inspect_container(f"{PREFIX}svc")["HostConfig"]["Memory"] == 96 * 1024 * 1024
    assert _ids(api) == ids

    changed = applier.apply(_stack(env="A=2"))
    assert changed.replaced == ["svc"] and changed.created == []
    assert _ids(api)["applier-test-svc"] != ids["applier-test-svc"]
    assert _ids(api)["applier-test-job"] == ids["applier-test-job"]

    # A network replaced delete-first takes the container attached to it along.
    renet = applier.apply(_stack(env="A=2", net_labels="two"))
    assert renet.replaced == ["net", "svc"]

    removed = applier.apply(_stack(env="A=2", net_labels="two", with_job=False))
    assert removed.deleted == ["job"]
    assert "applier-test-job" not in _ids(api)

    applier.destroy()
    assert _ids(api) == {}
    assert not api.networks(names=[f"{PREFIX}net"])
    assert not [v for v in api.volumes().get("Volumes") or [] if v["Name"].startswith(PREFIX)]
    assert api.inspect_image(TEST_IMAGE)  # keep_locally
    assert applier.state.entries == {}


def test_upload_into_a_read_only_root_is_refused_by_the_daemon(api: docker.APIClient, applier: Applier) -> None:
    """The provider copies every upload to "/" (CopyToContainer dstPath), so a read-only root
    refuses it even when the file lands in a volume; the daemon's message surfaces."""
    stack = _stack()
    carrier = next(r for r in stack.registrations if r.name == "carrier")
    carrier.inputs["readOnly"] = True
    with pytest.raises(ApplyError, match="container rootfs is marked read-only"):
        applier.apply(_deployment(stack.registrations[:4]))
    # Created before the upload failed: in the state, tainted, and destroy removes it.
    assert applier.state.entries[carrier.urn].tainted
    applier.destroy()
    assert f"{PREFIX}carrier" not in _ids(api)


def test_wait_times_out_with_the_last_health_log(api: docker.APIClient, applier: Applier) -> None:
    image = _reg(A.IMAGE, "img", {"name": TEST_IMAGE, "keepLocally": True})
    sick = _reg(
        A.CONTAINER,
        "sick",
        {
            "name": f"{PREFIX}sick",
            "image": TEST_IMAGE,
            "entrypoints": ["sleep", "600"],
            "healthcheck": {"tests": ["CMD-SHELL", "echo not yet; false"], "interval": "1s", "retries": 1.0},
            "wait": True,
            "waitTimeout": 4.0,
        },
        [image],
    )
    with pytest.raises(ApplyError, match=r"container failed to be in healthy state.*not yet"):
        applier.apply(_deployment([image, sick]))


def test_an_autonamed_volume_is_replaced_create_first(api: docker.APIClient, applier: Applier) -> None:
    def volume(label: str) -> Deployment:
        return _deployment([_reg(A.VOLUME, f"{PREFIX}auto", {"labels": [{"label": "v", "value": label}]})])

    applier.apply(volume("one"))
    (old,) = [e.id for e in applier.state.entries.values()]
    assert old.startswith(f"{PREFIX}auto-") and applier.apply(volume("one")).unchanged == [f"{PREFIX}auto"]
    assert applier.apply(volume("two")).replaced == [f"{PREFIX}auto"]
    (new,) = [e.id for e in applier.state.entries.values()]
    names = {v["Name"] for v in api.volumes().get("Volumes") or []}
    assert new != old and new in names and old not in names


def test_a_must_run_container_found_stopped_is_started_by_the_next_apply(
    api: docker.APIClient, applier: Applier
) -> None:
    """Read (which ends Create) sets must_run=false in the state for a stopped container; the next
    `up` diffs it against must_run=true and Update starts the container: with attach and the
    default must_run, a run-once job runs again on every other apply."""
    image = _reg(A.IMAGE, "img", {"name": TEST_IMAGE, "keepLocally": True})
    once = _reg(A.CONTAINER, "once", {"name": f"{PREFIX}once", "image": TEST_IMAGE, "entrypoints": ["true"]}, [image])
    once.inputs["attach"] = True
    stack = _deployment([image, once])
    assert applier.apply(stack).exit_codes == {"once": 0}
    again = applier.apply(stack)
    assert (again.updated, again.started) == (["once"], ["once"])
    assert applier.apply(stack).unchanged == ["img", "once"]


def test_a_joined_namespace_is_shared_and_replaced_with_its_owner(api: docker.APIClient, applier: Applier) -> None:
    """network_mode container:<owner id> (the program's Redis tunnel sidecars): the joiner sees the
    owner's loopback; the owner replaced (delete-first, a container) takes the joiner with it,
    whose network_mode (ForceNew) held the old id; StopTimeout reaches the daemon; destroy stops
    with destroy_grace_seconds, which a process that exits on SIGTERM does not wait out."""
    image = _reg(A.IMAGE, "img", {"name": TEST_IMAGE, "keepLocally": True})

    def stack(label: str) -> Deployment:
        owner = _reg(A.CONTAINER, "owner", {"name": f"{PREFIX}owner", "image": TEST_IMAGE, "user": "1000:1000",
                     "entrypoints": ["sleep", "600"], "labels": [{"label": "v", "value": label}]},
                     [image], outputs={})  # fmt: skip
        joiner = _reg(A.CONTAINER, "joiner", {"name": f"{PREFIX}joiner", "image": TEST_IMAGE, "user": "1000:1000",
                      "entrypoints": ["/bin/sh", "-c", "trap 'exit 0' TERM; sleep 600 & wait"],
                      "networkMode": "container:owner-id", "stopTimeout": 180.0, "destroyGraceSeconds": 180.0},
                      [owner], outputs={})  # fmt: skip
        return _deployment([image, owner, joiner])

    applier.apply(stack("one"))
    owner, joiner = (api.inspect_container(f"{PREFIX}{n}") for n in ("owner", "joiner"))
    assert joiner["HostConfig"]["NetworkMode"] == f"container:{owner['Id']}"
    assert joiner["Config"]["StopTimeout"] == 180
    # One namespace: the same network interfaces seen from both.
    links = [api.exec_start(api.exec_create(c["Id"], ["cat", "/proc/net/dev"])["Id"]) for c in (owner, joiner)]
    assert links[0] == links[1]
    report = applier.apply(stack("two"))
    assert sorted(report.replaced) == ["joiner", "owner"], report
    owner2, joiner2 = (api.inspect_container(f"{PREFIX}{n}") for n in ("owner", "joiner"))
    assert owner2["Id"] != owner["Id"] and joiner2["HostConfig"]["NetworkMode"] == f"container:{owner2['Id']}"
    started = time.monotonic()
    applier.destroy()
    assert time.monotonic() - started < 30  # the joiner left on SIGTERM, not after 180 s


def test_a_missing_image_is_an_error_not_a_pull(api: docker.APIClient, applier: Applier) -> None:
    image = _reg(A.IMAGE, "img", {"name": f"{PREFIX}absent:never", "keepLocally": True})
    with pytest.raises(ApplyError, match="never pulls"):
        applier.apply(_deployment([image]))


def test_only_the_four_docker_types_are_applied() -> None:
    other = _reg("docker:index/service:Service", "svc", {})
    with pytest.raises(ApplyError, match="not applied"):
        A.apply_order(_deployment([other]))
    skipped = [_reg("pulumi:providers:docker", "docker", {}), _reg("random:index/randomBytes:RandomBytes", "r", {})]
    assert A.apply_order(_deployment(skipped)) == []
