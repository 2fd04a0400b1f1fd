import pytest
from falconet_container.model import ContainerInfo, parse_rfc3339_ns, split_image


@pytest.mark.parametrize("ref,expected", [
    ("busybox", ("busybox", None, None)),
    ("busybox:latest", ("busybox", "latest", None)),
    ("docker.io/library/busybox-local:latest", ("docker.io/library/busybox-local", "latest", None)),
    ("localhost:5000/app", ("localhost:5000/app", None, None)),
    ("localhost:5000/app:1.2", ("localhost:5000/app", "1.2", None)),
    ("nginx:1.25@sha256:abcd", ("nginx", "1.25", "sha256:abcd")),
    ("nginx@sha256:abcd", ("nginx", None, "sha256:abcd")),
    ("sha256:5de0c337", (None, None, "sha256:5de0c337")),
    ("", (None, None, None)),
    (None, (None, None, None)),
])
def test_split_image(ref, expected):
    assert split_image(ref) == expected


def test_rfc3339_nanoseconds():
    assert parse_rfc3339_ns("1970-01-01T00:00:01.000000002Z") == 1_000_000_002
    assert parse_rfc3339_ns("2026-11-28T18:20:20.196910761Z") == 1795890020196910761
    assert parse_rfc3339_ns("2026-11-28T19:20:20.5+01:00") == 1795890020500000000
    assert parse_rfc3339_ns("2026-11-28T18:20:20Z") == 1795890020000000000
    assert parse_rfc3339_ns("0001-01-01T00:00:00Z") is None
    assert parse_rfc3339_ns("yesterday") is None
    assert parse_rfc3339_ns(None) is None


def test_round_trip():
    c = ContainerInfo("a" * 64, type="docker", name="web", labels={"app": "x"}, privileged=True)
    assert ContainerInfo.from_dict(c.to_dict()) == c
    assert c.id == "a" * 12
    with pytest.raises(ValueError):
        ContainerInfo.from_dict({"name": "no id"})
