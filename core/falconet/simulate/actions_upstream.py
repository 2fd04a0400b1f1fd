"""Actions for behaviours that only Falco's incubating and sandbox rules detect
(``suites/falco-incubating-sandbox.yaml``). Same rules as :mod:`falconet.simulate.actions`:
argv lists or constant scripts, nothing leaves loopback, files below a private directory or,
where a rule needs a fixed name, in a root-only directory of a container (removed first,
created exclusively, removed afterwards). Registered when ``actions`` is imported."""

from __future__ import annotations

from falconet.simulate.actions import _ok, action
from falconet.simulate.contexts import Context

_CONTAINERS = ("runc", "docker")


def _fixed_file(ctx: Context, path: str, then: str = "") -> None:
    """Create ``path`` (a fixed name a rule needs, in a container's root-only directory)
    exclusively, run ``then`` on it (``$f``), remove it."""
    parent = path.rsplit("/", 1)[0] or "/"
    _ok(ctx.sh(f"f={path}; mkdir -p {parent} && rm -f $f && (set -C; echo falconet-sim > $f)"
               f"{' && ' + then if then else ''}; rc=$?; rm -f $f; exit $rc"), f"write {path}")


def _named(ctx: Context, d: str, name: str, target: str = "/bin/true") -> str:
    """A symlink ``d/name`` to ``target``: executing it makes a process called ``name``."""
    _ok(ctx.exec(["ln", "-s", target, f"{d}/{name}"]), f"{name} link")
    return f"{d}/{name}"


# ----------------------------------------------------------------------------- incubating

@action("read_proc_environ", "`cat /proc/self/environ` in a container", where=_CONTAINERS,
        rule=None)
def _proc_environ(ctx: Context) -> None:
    _ok(ctx.exec(["cat", "/proc/self/environ"]), "cat environ")


@action("create_file_below_dev", "create and remove /dev/falconet-sim in a container",
        where=_CONTAINERS, rule=None)
def _dev_file(ctx: Context) -> None:
    _fixed_file(ctx, "/dev/falconet-sim")


@action("modify_shell_config", "`touch` a file named .bashrc in a private directory",
        where=("host", *_CONTAINERS), rule=None)
def _bashrc(ctx: Context) -> None:
    with ctx.private_dir() as d:
        _ok(ctx.exec(["touch", f"{d}/.bashrc"]), "touch .bashrc")


@action("crontab_list", "`crontab -l` in a container", where=_CONTAINERS, rule=None)
def _crontab(ctx: Context) -> None:
    ctx.exec(["crontab", "-l"])          # "no crontab for root" is fine: it ran


@action("db_server_spawns_id", "a process named postgres runs `id`",
        where=("host", *_CONTAINERS), rule=None, needs_python=True)
def _postgres_id(ctx: Context) -> None:
    _ok(ctx.payload("spawn", "id", argv0="postgres"), "postgres spawn")


@action("user_mgmt_binary_on_host", "run a program named vigr (a link to true) on the host",
        where=("host",), rule=None)
def _vigr(ctx: Context) -> None:
    with ctx.private_dir() as d:
        _ok(ctx.exec([_named(ctx, d, "vigr")]), "vigr")


@action("curl_with_http_proxy", "`curl --version` with HTTP_PROXY in its environment",
        where=("host",), rule=None)
def _curl_proxy(ctx: Context) -> None:
    _ok(ctx.exec(["env", "HTTP_PROXY=http://127.0.0.1:9", "curl", "--version"]), "curl")


@action("wget_in_container", "`wget` of a closed loopback port in a container",
        where=_CONTAINERS, rule=None)
def _wget(ctx: Context) -> None:
    ctx.exec(["wget", "-q", "-T", "1", "-O", "/dev/null", "http://127.0.0.1:9/"])


# -------------------------------------------------------------------------------- sandbox

@action("known_miner_binary", "run a program named xmrig (a link to true)",
        where=("host", *_CONTAINERS), rule=None)
def _xmrig(ctx: Context) -> None:
    with ctx.private_dir() as d:
        ctx.exec([_named(ctx, d, "xmrig")])


@action("base64_decode_in_container", "`base64 -d /dev/null` in a container", where=_CONTAINERS,
        rule=None)
def _base64(ctx: Context) -> None:
    _ok(ctx.exec(["base64", "-d", "/dev/null"]), "base64 -d")


@action("mkdir_below_bin", "create and remove the directory /usr/bin/falconet-sim-dir in a "
        "container", where=_CONTAINERS, rule=None)
def _mkdir_bin(ctx: Context) -> None:
    _ok(ctx.sh("d=/usr/bin/falconet-sim-dir; rm -rf $d; mkdir $d; rc=$?; rmdir $d; exit $rc"),
        "mkdir /usr/bin/...")


@action("write_below_root", "create and remove /falconet-sim-root in a container",
        where=_CONTAINERS, rule=None)
def _write_root(ctx: Context) -> None:
    _fixed_file(ctx, "/falconet-sim-root")


@action("write_below_lib", "create and remove /lib/falconet-sim in a container",
        where=_CONTAINERS, rule=None)
def _write_lib(ctx: Context) -> None:
    _fixed_file(ctx, "/lib/falconet-sim")


@action("write_rpm_database", "create and remove /var/lib/rpm/falconet-sim in a container",
        where=_CONTAINERS, rule=None)
def _write_rpm(ctx: Context) -> None:
    _fixed_file(ctx, "/var/lib/rpm/falconet-sim")


@action("write_package_repository", "create and remove /etc/apt/sources.list.d/falconet-sim.list "
        "in a container", where=_CONTAINERS, rule=None)
def _write_repo(ctx: Context) -> None:
    _fixed_file(ctx, "/etc/apt/sources.list.d/falconet-sim.list")


@action("host_path_read_in_container", "write and `cat` /host/falconet-sim in a container (the "
        "path a host filesystem mount would have)", where=_CONTAINERS, rule=None)
def _host_path(ctx: Context) -> None:
    _fixed_file(ctx, "/host/falconet-sim", "cat $f >/dev/null")


@action("block_device_read_in_container", "write and `cat` a regular file named "
        "/dev/sdfalconet-sim in a container (a block device's name)", where=_CONTAINERS, rule=None)
def _block_dev(ctx: Context) -> None:
    _fixed_file(ctx, "/dev/sdfalconet-sim", "cat $f >/dev/null")


@action("k8s_client_in_container", "run a program named kubectl (a busybox link) in a container",
        where=_CONTAINERS, rule=None)
def _kubectl(ctx: Context) -> None:
    with ctx.private_dir() as d:
        ctx.exec([_named(ctx, d, "kubectl", "/bin/busybox")])   # "applet not found": it ran


@action("web_server_spawns_id", "a process named nginx runs `id`",
        where=("host", *_CONTAINERS), rule=None, needs_python=True)
def _nginx_id(ctx: Context) -> None:
    _ok(ctx.payload("spawn", "id", argv0="nginx"), "nginx spawn")


def _as_nobody(ctx: Context, name: str, *args: str) -> None:
    with ctx.private_dir() as d:
        # nobody must reach the link: the directory is root's, 0755, nothing else can write it
        _ok(ctx.exec(["chmod", "755", d]), "chmod private directory")
        _ok(ctx.payload("run_as", "65534", _named(ctx, d, name), *args), f"{name} as nobody")


@action("pkexec_without_args", "user nobody runs a program named pkexec with no argument "
        "(CVE-2021-4034's argc 0 pattern; a link to true)", where=("host",), rule=None,
        needs_python=True)
def _pkexec(ctx: Context) -> None:
    _as_nobody(ctx, "pkexec")


@action("sudoedit_backslash", "user nobody runs a program named sudoedit with `-s \\` "
        "(CVE-2021-3156's pattern; a link to true)", where=("host",), rule=None, needs_python=True)
def _sudoedit(ctx: Context) -> None:
    _as_nobody(ctx, "sudoedit", "-s", "\\")
