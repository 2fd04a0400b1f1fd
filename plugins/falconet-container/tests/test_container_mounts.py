"""container.mounts / container.mount[...] / container.mount.<part>[...] on runtime metadata
recorded from this machine's real runtimes: ``docker inspect`` of a container run with
``-v /tmp/i17m/data:/data:ro -v i17m-vol:/vol -v /tmp/i17m:/shared:z --tmpfs /scratch`` (docker
lists no tmpfs in Mounts), and the OCI ``config.json`` containerd wrote for
``ctr run --mount type=bind,src=/tmp/i17m/data,dst=/data,options=rbind:ro``. Expected values
follow Falco's container plugin 0.7.1 (see falconet_container/fields.py:mount_selector)."""

import json

import pytest
from container_helpers import event, thread, write_state
from falconet.fields import FieldRegistry, UnknownFieldError
from falconet_container.enricher import ContainerEnricher
from falconet_container.fields import field_defs
from falconet_container.model import (
    ContainerInfo,
    Mount,
    mounts_from_docker,
    mounts_from_spec,
)
from falconet_container.resolver import MetadataResolver, ResolverConfig

A = "a1" * 32

DOCKER_MOUNTS = [
    {"Type": "bind", "Source": "/tmp/i17m/data", "Destination": "/data", "Mode": "ro",
     "RW": False, "Propagation": "rprivate"},
    {"Type": "volume", "Name": "i17m-vol",
     "Source": "/tmp/falconet-ci/docker/data/volumes/i17m-vol/_data", "Destination": "/vol",
     "Driver": "local", "Mode": "z", "RW": True, "Propagation": ""},
    {"Type": "bind", "Source": "/tmp/i17m", "Destination": "/shared", "Mode": "z", "RW": True,
     "Propagation": "rprivate"},
]

CTR_SPEC_MOUNTS = [
    {"destination": "/proc", "type": "proc", "source": "proc",
     "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
     "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
     "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
    {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
     "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
    {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
     "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs",
     "options": ["nosuid", "noexec", "nodev", "ro"]},
    {"destination": "/run", "type": "tmpfs", "source": "tmpfs",
     "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {"destination": "/data", "type": "bind", "source": "/tmp/i17m/data",
     "options": ["rbind", "ro"]},
]

DOCKER_STR = ("/tmp/i17m/data:/data:ro:false:rprivate,"
              "/tmp/falconet-ci/docker/data/volumes/i17m-vol/_data:/vol:z:true:,"
              "/tmp/i17m:/shared:z:true:rprivate")


def fields_for(info: ContainerInfo | None, container_id: str = A):
    enr = ContainerEnricher(read_cgroup=lambda pid: None)
    if info is not None:
        enr.containers[info.full_id] = info
    reg = FieldRegistry()
    reg.register_all(field_defs(enr))
    evt = event(thread(100, container_id=container_id))

    def get(name: str, arg: str | None = None):
        return reg.resolve(name, arg).extract(evt)
    return get, reg


def docker_info() -> ContainerInfo:
    return ContainerInfo(A, type="docker", mounts=mounts_from_docker(DOCKER_MOUNTS),
                         status="resolved")


# ----------------------------------------------------------------------------- runtime metadata
def test_docker_inspect_mounts_are_taken_as_reported():
    assert mounts_from_docker(DOCKER_MOUNTS)[:2] == (
        Mount("/tmp/i17m/data", "/data", "ro", False, "rprivate"),
        Mount("/tmp/falconet-ci/docker/data/volumes/i17m-vol/_data", "/vol", "z", True, ""))
    assert mounts_from_docker(None) == () and mounts_from_docker([None, 3]) == ()


def test_oci_spec_mounts_as_the_containerd_engine_reads_them():
    ms = mounts_from_spec({"mounts": CTR_SPEC_MOUNTS, "linux": {}})
    assert len(ms) == 8                                  # every spec mount, /proc too
    assert ms[0] == Mount("proc", "/proc", "", True, "")
    assert ms[1].mode == "755"                           # the mode= option, not ro/rw
    assert ms[2].mode == "0620"
    assert ms[5].rdwr is False                           # /sys: "ro"
    assert ms[7] == Mount("/tmp/i17m/data", "/data", "", False, "")
    # propagation: the spec's rootfsPropagation, for every mount
    ms = mounts_from_spec({"mounts": CTR_SPEC_MOUNTS, "linux": {"rootfsPropagation": "rslave"}})
    assert {m.propagation for m in ms} == {"rslave"}
    assert mounts_from_spec(None) is None and mounts_from_spec({}) is None


# ----------------------------------------------------------------------------- the fields
def test_container_mounts_joins_with_commas():
    get, _ = fields_for(docker_info())
    assert get("container.mounts") == DOCKER_STR


def test_by_index():
    get, _ = fields_for(docker_info())
    assert get("container.mount", "0") == "/tmp/i17m/data:/data:ro:false:rprivate"
    assert get("container.mount", "1") == \
        "/tmp/falconet-ci/docker/data/volumes/i17m-vol/_data:/vol:z:true:"
    assert get("container.mount.source", "2") == "/tmp/i17m"
    assert get("container.mount.dest", "0") == "/data"
    assert get("container.mount.mode", "1") == "z"
    assert get("container.mount.rdwr", "0") == "false"
    assert get("container.mount.rdwr", "1") == "true"
    assert get("container.mount.propagation", "0") == "rprivate"
    assert get("container.mount.propagation", "1") == ""
    assert get("container.mount", "3") is None           # no such mount: missing, not "none"
    assert get("container.mount.dest", "99999999999999999999") is None


def test_by_path_is_a_regex_search_of_the_source():
    get, _ = fields_for(docker_info())
    # the first mount whose source contains /tmp/i17m: the /data one, not /shared
    assert get("container.mount.dest", "/tmp/i17m") == "/data"
    assert get("container.mount.dest", "^/tmp/i17m$") == "/shared"
    assert get("container.mount.rdwr", "/tmp/i17m/data") == "false"
    assert get("container.mount.mode", "_data$") == "z"
    assert get("container.mount", "volumes/i17m-vol") == \
        "/tmp/falconet-ci/docker/data/volumes/i17m-vol/_data:/vol:z:true:"
    # what the description calls a glob is a regex: /tmp/* is "/tmp" then any number of "/"
    assert get("container.mount.dest", "/tmp/*") == "/data"
    # the source is not the destination: no source contains /vol
    assert get("container.mount.dest", "^/vol") is None
    assert get("container.mount.propagation", "/nonexistent") is None


def test_mount_source_is_found_by_destination():
    get, _ = fields_for(docker_info())
    assert get("container.mount.source", "/data") == "/tmp/i17m/data"
    assert get("container.mount.source", "^/vol$") == \
        "/tmp/falconet-ci/docker/data/volumes/i17m-vol/_data"
    assert get("container.mount.source", "/tmp") is None


def test_index_or_key_as_libsinsp_reads_the_argument():
    info = ContainerInfo(A, mounts=(Mount("/a", "/x"), Mount("/b-1/01", "/y")), status="resolved")
    get, _ = fields_for(info)
    assert get("container.mount.dest", "1") == "/y"       # an index
    assert get("container.mount.dest", "0") == "/x"
    assert get("container.mount.dest", "01") == "/y"      # leading zero: a key (regex "01")
    assert get("container.mount.dest", "-1") == "/y"      # not digits only: a key
    assert get("container.mount.dest", "-2") is None


def test_host_and_unknown():
    get, _ = fields_for(None, container_id="")
    assert get("container.mounts") == ""               # the plugin's host entry: no mounts
    assert get("container.mount", "0") is None
    assert get("container.mount.dest", "/") is None
    get, _ = fields_for(ContainerInfo(A))               # lookup pending: unknown
    assert get("container.mounts") is None
    assert get("container.mount.rdwr", "0") is None
    get, _ = fields_for(ContainerInfo(A, mounts=(), status="resolved"))
    assert get("container.mounts") == ""
    assert get("container.mount", "0") is None


def test_argument_errors_at_load_time():
    _, reg = fields_for(docker_info())
    with pytest.raises(UnknownFieldError, match="requires an argument"):
        reg.resolve("container.mount.dest")
    with pytest.raises(UnknownFieldError, match="does not take an argument"):
        reg.resolve("container.mounts", "0")
    with pytest.raises(UnknownFieldError, match="regular expression"):
        reg.resolve("container.mount.dest", "*/data")
    with pytest.raises(UnknownFieldError):
        reg.resolve("container.mount.foo", "0")
    with pytest.raises(UnknownFieldError):
        reg.resolve("container.mount.dest.data")   # no dotted form (Falco refuses it too)


def test_value_follows_a_new_container_record():
    """The extractor remembers its last answer per ContainerInfo; a new record (the lookup
    finished, a replayed update) is a new object and is read afresh."""
    enr = ContainerEnricher(read_cgroup=lambda pid: None)
    enr.containers[A] = ContainerInfo(A, mounts=(Mount("/a", "/x"),), status="resolved")
    reg = FieldRegistry()
    reg.register_all(field_defs(enr))
    f = reg.resolve("container.mount.dest", "/a")
    assert f.extract(event(thread(1, container_id=A))) == "/x"
    enr.containers[A] = ContainerInfo(A, mounts=(Mount("/a", "/z"),), status="resolved")
    assert f.extract(event(thread(1, container_id=A))) == "/z"


# ----------------------------------------------------------------------------- capture records
def test_capture_record_round_trip():
    info = docker_info()
    back = ContainerInfo.from_dict(json.loads(json.dumps(info.to_dict())))
    assert back == info and back.mounts == info.mounts
    old = info.to_dict()
    del old["mounts"]                                    # a capture older than these fields
    assert ContainerInfo.from_dict(old).mounts is None
    with pytest.raises(ValueError, match="mount"):
        ContainerInfo.from_dict({**info.to_dict(), "mounts": [{"source": 1}]})
    with pytest.raises(ValueError, match="mount"):
        ContainerInfo.from_dict({**info.to_dict(), "mounts": "x"})


def test_restored_capture_state_gives_the_same_values():
    live_get, _ = fields_for(docker_info())
    enr = ContainerEnricher(read_cgroup=lambda pid: None)
    enr.restore(json.loads(json.dumps({"container": docker_info().to_dict(),
                                       "pid": 100, "container_id": A})))
    reg = FieldRegistry()
    reg.register_all(field_defs(enr))
    evt = event(thread(100, container_id=A))
    for name, arg in (("container.mounts", None), ("container.mount", "0"),
                      ("container.mount.rdwr", "/tmp/i17m/data"),
                      ("container.mount.source", "/vol")):
        assert reg.resolve(name, arg).extract(evt) == live_get(name, arg)


# ----------------------------------------------------------------------------- the resolver
@pytest.fixture
def roots(tmp_path):
    runc, ctrd = tmp_path / "run-runc", tmp_path / "containerd-runc"
    runc.mkdir()
    ctrd.mkdir()
    return runc, ctrd


def resolver(roots, tmp_path):
    return MetadataResolver(ResolverConfig(
        docker_socket=str(tmp_path / "no-docker.sock"),
        containerd_socket=str(tmp_path / "no-containerd.sock"),
        runc_roots=[str(r) for r in roots], ctr_binary="/nonexistent/ctr",
        podman_binary="/nonexistent/podman", timeout=0.3))


def test_resolver_docker_takes_inspect_mounts(roots, tmp_path, monkeypatch):
    r = resolver(roots, tmp_path)
    monkeypatch.setattr(r.docker, "container", lambda cid: {
        "Name": "/web", "Image": "sha256:" + "5d" * 32, "Config": {"Image": "busybox:latest"},
        "State": {"StartedAt": "2026-12-02T06:27:00Z"}, "HostConfig": {},
        "Mounts": DOCKER_MOUNTS})
    monkeypatch.setattr(r.docker, "image", lambda ref: None)
    info = r.resolve(A, "docker")
    assert info.mounts == mounts_from_docker(DOCKER_MOUNTS)


def test_resolver_containerd_and_runc_take_the_bundle_spec(roots, tmp_path):
    write_state(roots[1], A, {}, namespace="default",
                spec_extra={"mounts": CTR_SPEC_MOUNTS, "linux": {"maskedPaths": ["/proc/kcore"]}})
    info = resolver(roots, tmp_path).resolve(A, "containerd")
    assert info.type == "containerd"
    assert info.mounts == mounts_from_spec({"mounts": CTR_SPEC_MOUNTS})
    B = "b2" * 32
    write_state(roots[0], B, {}, spec_extra={"mounts": CTR_SPEC_MOUNTS[-1:],
                                             "linux": {"rootfsPropagation": "private"}})
    info = resolver(roots, tmp_path).resolve(B)
    assert info.type == "runc"
    assert info.mounts == (Mount("/tmp/i17m/data", "/data", "", False, "private"),)


def test_resolver_podman_inspect_mounts(roots, tmp_path):
    write_state(roots[0], A, {"io.container.manager": "libpod"},
                bundle=tmp_path / "nostore" / "overlay-containers" / A / "userdata",
                spec_extra={"mounts": CTR_SPEC_MOUNTS})
    fake = tmp_path / "podman"
    doc = [{"Name": "pc9", "ImageName": "quay.io/x/y:2", "Image": "5d" * 8, "Config": {},
            "Mounts": [{"Type": "bind", "Source": "/srv", "Destination": "/data",
                        "Mode": "", "RW": False, "Propagation": "rprivate"}]}]
    fake.write_text(f"#!/bin/sh\necho '{json.dumps(doc)}'\n")
    fake.chmod(0o755)
    r = resolver(roots, tmp_path)
    r.cfg.podman_binary = str(fake)
    assert r.resolve(A, "podman").mounts == (Mount("/srv", "/data", "", False, "rprivate"),)
