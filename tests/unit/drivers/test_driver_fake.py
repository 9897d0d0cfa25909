"""FakeDriver behaves like an engine as far as the agent can tell, and records calls."""

from __future__ import annotations

from pathlib import Path

import pytest

from cellplane import drivers
from cellplane.drivers import errors
from cellplane.drivers.base import ContainerSpec, Driver, MountSpec, NetworkSpec, PortSpec
from cellplane.drivers.fake import FakeDriver
from cellplane.drivers.podman import PodmanDriver


def spec(name: str = "c1", **kwargs: object) -> ContainerSpec:
    values: dict[str, object] = {"image": "busybox:latest", "labels": {"cellplane.cell": name}}
    values.update(kwargs)
    return ContainerSpec(name=name, **values)  # type: ignore[arg-type]


@pytest.fixture
def fake() -> FakeDriver:
    return FakeDriver(images=["busybox:latest"])


def test_both_drivers_satisfy_the_protocol(tmp_path: Path) -> None:
    assert isinstance(FakeDriver(), Driver)
    # Building a PodmanDriver opens no connection, so this needs no engine.
    podman = PodmanDriver(f"unix://{tmp_path}/none.sock")
    assert isinstance(podman, Driver)
    with pytest.raises(errors.TemporaryDriverError):
        podman.ping()
    podman.close()


def test_lifecycle(fake: FakeDriver) -> None:
    fake.ensure_network(NetworkSpec("net", labels={"p": "1"}))
    cid = fake.create(spec(network="net", ports=[PortSpec(80)]))
    assert fake.inspect(cid).state == "created"
    fake.start(cid)
    info = fake.inspect("c1")
    assert info.running and info.address is not None and info.started_at is not None
    assert info.ports[0].host_port is not None
    fake.stop(cid, timeout=1)
    stopped = fake.inspect(cid)
    assert (stopped.state, stopped.exit_code, stopped.address) == ("exited", 143, None)
    fake.start(cid)
    fake.kill(cid)
    assert fake.inspect(cid).exit_code == 137
    fake.kill(cid)  # not running: no error, like the real driver
    fake.remove(cid)
    with pytest.raises(errors.ContainerNotFound):
        fake.inspect(cid)
    with pytest.raises(errors.ContainerNotFound):
        fake.remove(cid)
    assert [name for name, _ in fake.calls][:3] == ["ensure_network", "create", "inspect"]


def test_create_errors(fake: FakeDriver) -> None:
    fake.create(spec())
    with pytest.raises(errors.NameConflict):
        fake.create(spec())
    with pytest.raises(errors.ImageNotFound):
        fake.create(spec("c2", image="nope"))
    with pytest.raises(errors.NetworkNotFound):
        fake.create(spec("c3", network="missing"))


def test_list_filters_by_labels_and_tests_can_change_the_world(fake: FakeDriver) -> None:
    a = fake.create(spec("a"))
    b = fake.create(spec("b"))
    fake.start(a)
    fake.start(b)
    assert {i.name for i in fake.list({})} == {"a", "b"}
    assert [i.name for i in fake.list({"cellplane.cell": "a"})] == ["a"]
    fake.mark_exited(a, exit_code=3)
    assert fake.inspect(a).exit_code == 3
    fake.mark_removed(b)
    assert [i.name for i in fake.list({})] == ["a"]


def test_volumes_and_networks(fake: FakeDriver) -> None:
    fake.ensure_volume("v", {"p": "1"})
    fake.ensure_volume("v", {"p": "1"})
    assert fake.list_volumes({"p": "1"}) == ["v"]
    cid = fake.create(spec(mounts=[MountSpec("v", "/data")]))
    with pytest.raises(errors.VolumeInUse):
        fake.remove_volume("v")
    fake.remove(cid)
    fake.remove_volume("v")
    fake.remove_volume("v")  # idempotent
    assert fake.list_volumes({}) == []
    fake.ensure_network(NetworkSpec("n", labels={"p": "1"}, internal=True))
    assert fake.list_networks({"p": "1"}) == ["n"] and "n" in fake.internal_networks
    fake.remove_network("n")
    fake.remove_network("n")
    assert fake.list_networks({}) == []


def test_images(fake: FakeDriver, tmp_path: Path) -> None:
    archive = tmp_path / "app.tar"
    fake.archives[archive] = ["app:1"]
    assert fake.load_image(archive) == ["app:1"]
    assert fake.has_image("app:1")
    fake.remove_image("app:1")
    assert not fake.has_image("app:1")
    with pytest.raises(errors.ImageNotFound):
        fake.remove_image("app:1")


def test_failure_injection_and_unreachable(fake: FakeDriver) -> None:
    fake.fail_next("create", errors.TemporaryDriverError("busy"))
    with pytest.raises(errors.TemporaryDriverError):
        fake.create(spec())
    cid = fake.create(spec())  # only the next call failed
    fake.reachable = False
    with pytest.raises(errors.TemporaryDriverError):
        fake.ping()
    fake.reachable = True
    assert fake.called("create") == [(spec(),), (spec(),)]
    assert fake.inspect(cid).name == "c1"


def test_exec_and_logs(fake: FakeDriver) -> None:
    cid = fake.create(spec())
    with pytest.raises(errors.PermanentDriverError):
        fake.exec(cid, ["true"])
    fake.start(cid)
    fake.exec_handler = lambda _id, cmd: drivers.ExecResult(
        len(cmd), b" ".join(map(str.encode, cmd))
    )
    assert fake.exec(cid, ["echo", "hi"]) == drivers.ExecResult(2, b"echo hi")
    fake.set_logs(cid, b"one\ntwo\nthree\n")
    assert list(fake.logs(cid)) == [b"one\n", b"two\n", b"three\n"]
    assert list(fake.logs(cid, tail=1)) == [b"three\n"]
    assert list(fake.logs(cid, tail=0)) == []


def test_package_exports_resolve() -> None:
    for name in drivers.__all__:
        assert getattr(drivers, name) is not None
