"""Every operator, transformer and the missing-value semantics, on hand-built events."""

from __future__ import annotations

import pytest
from falconet.state.tables import FdInfo
from rulehelp import errors, matcher
from stubfields import event, proc

BASH = proc("bash", "/usr/bin/bash", ["-c", "ls /tmp"], uid=1000, tty=34817,
            ancestors=[proc("sshd", "/usr/sbin/sshd", pid=50), proc("systemd", "/sbin/init", pid=1)],
            caps="CAP_CHOWN CAP_SYS_ADMIN")
FILE = FdInfo(3, "f", "/etc/shadow", "/etc/shadow")
SOCK = FdInfo(4, "4", "10.0.0.5:4000->10.1.2.3:22", l4proto="tcp", sip="10.0.0.5", sport=4000,
              dip="10.1.2.3", dport=22, connected=True)


def ev(etype: str = "openat", fd: FdInfo | None = FILE, thread=BASH, **kw):
    return event(etype, thread, fd=fd, **kw)


OPERATOR_CASES = [
    # = == !=
    ("proc.name = bash", True), ("proc.name == bash", True), ("proc.name = Bash", False),
    ("proc.name != bash", False), ("proc.name != zsh", True),
    # numeric comparisons, parsed into the field's type
    ("user.uid = 1000", True), ("user.uid != 1000", False), ("user.uid < 1001", True),
    ("user.uid <= 1000", True), ("user.uid > 1000", False), ("user.uid >= 1000", True),
    ("user.uid = 0x3e8", True), ("fd.num = 3", True), ("fd.num > -1", True),
    # string ordering is lexicographic
    ("proc.name > 5", True), ("proc.name < 5", False),
    # substring / prefix / suffix
    ("proc.cmdline contains 'ls /tmp'", True), ("proc.cmdline contains LS", False),
    ("proc.cmdline icontains 'LS /TMP'", True), ("fd.name startswith /etc/", True),
    ("fd.name startswith /usr", False), ("fd.name endswith shadow", True),
    ("fd.name endswith passwd", False),
    # glob (whole string) and iglob
    ("fd.name glob '/etc/*'", True), ("fd.name glob '/etc/sha?ow'", True),
    ("fd.name glob 'etc/*'", False), ("fd.name glob '/etc/[a-s]hadow'", True),
    ("fd.name iglob '/ETC/SH*'", True), ("fd.name glob '/ETC/SH*'", False),
    ("fd.name glob '/etc/[!x]hadow'", True), ("fd.name glob '/etc/[^s]hadow'", False),
    ("fd.name glob /e\\tc/sha\\dow", True), ("fd.name glob '/*'", True),
    # regex is a full match
    ("fd.name regex '/etc/[a-z]+'", True), ("fd.name regex 'etc'", False),
    ("fd.name regex '.*shad.*'", True),
    # in / intersects on single values
    ("proc.name in (zsh, bash)", True), ("proc.name in (zsh, sh)", False),
    ("proc.name intersects (bash)", True), ("user.uid in (0, 1000)", True),
    ("user.uid in (0, 33)", False), ("proc.name in ()", False),
    # pmatch: path-component prefixes, with glob components
    ("fd.name pmatch (/etc)", True), ("fd.name pmatch (/et)", False),
    ("fd.name pmatch (/usr, /etc/shadow)", True), ("fd.name pmatch (/etc/shadow/x)", False),
    ("fd.name pmatch ('/e*')", True), ("fd.name pmatch ('/*/shadow')", True),
    ("fd.name pmatch ('/*/passwd')", False), ("fd.name pmatch (/)", True),
    # exists
    ("fd.name exists", True), ("user.loginname exists", False),
    # booleans
    ("fd.connected = false", True), ("fd.connected = true", False), ("evt.is_open_read = true", True),
    ("evt.is_open_write = true", False), ("evt.is_open_read = TRUE", True),
    # evt.type / evt.arg
    ("evt.type = openat", True), ("evt.type in (open, openat2)", False),
    ("evt.arg.name = /etc/shadow", True), ("evt.arg[0] = /etc/shadow", True),
    ("evt.arg.flags contains O_RDONLY", True), ("evt.arg.flags contains O_TRUNC", False),
    ("evt.res = SUCCESS", True), ("evt.rawres >= 0", True),
    # modifiers (Falco 0.44)
    ("proc.name startswith oneof (ba, zs)", True), ("proc.name startswith oneof (b, ba)", False),
    ("proc.name contains anyof (x, as)", True), ("proc.name contains allof (b, sh)", True),
    ("proc.name contains allof (b, zsh)", False),
    # boolean structure and precedence
    ("proc.name = zsh or proc.name = bash and user.uid = 1000", True),
    ("(proc.name = zsh or proc.name = bash) and user.uid = 0", False),
    ("not proc.name = zsh", True), ("not (proc.name = bash and user.uid = 1000)", False),
]


def _open_evt():
    return ev(args={"name": "/etc/shadow", "flags": "O_RDONLY|O_CLOEXEC", "flags_raw": 0}, res=3)


@pytest.mark.parametrize("cond, expected", OPERATOR_CASES)
def test_operator(cond: str, expected: bool) -> None:
    assert matcher(cond)(_open_evt()) is expected


def test_closure_compiler_gives_the_same_verdicts(monkeypatch) -> None:
    """The generated-code compiler and the closure fallback agree on every case."""
    import falconet.rules.loader as loader_mod
    monkeypatch.setattr(loader_mod, "USE_CODEGEN", False)
    for cond, expected in OPERATOR_CASES:
        assert matcher(cond)(_open_evt()) is expected, cond


def test_generated_code_contains_no_rule_text() -> None:
    from rulehelp import loaded, rule
    res = loaded(rule("proc.name = \"__import__('os')\" or fd.name startswith /etc/ or "
                      "user.uid in (1, 2)"))
    src = res.compiled[0].check.__falconet_source__
    assert "__import__" not in src and "/etc/" not in src and "proc.name" not in src
    assert res.ruleset.match(ev(thread=proc("__import__('os')")))


def test_very_deep_condition_falls_back_to_closures() -> None:
    from rulehelp import loaded, rule
    depth = 300          # Python's parser allows ~200 nested parentheses
    cond = "proc.name = z or (" * depth + "proc.name = bash" + ")" * depth + " and user.uid = 1000"
    res = loaded(rule(cond))
    assert not hasattr(res.compiled[0].check, "__falconet_source__")     # closures were used
    assert res.ruleset.match(_open_evt())
    assert not res.ruleset.match(ev(thread=proc("zsh")))


@pytest.mark.parametrize("cond, expected", [
    ("fd.sip = 10.1.2.3", True), ("fd.sip = 10.1.2.4", False), ("fd.sip != 10.1.2.4", True),
    ("fd.net = 10.0.0.0/8", True), ("fd.net = 192.168.0.0/16", False),
    ("fd.snet in (192.168.0.0/16, 10.1.0.0/16)", True), ("fd.ip in (10.1.2.3, ::1)", True),
    ("fd.sport = 22", True), ("fd.sport in (22, 2222)", True), ("fd.l4proto = tcp", True),
    ("fd.typechar = 4", True),
])
def test_network_fields(cond: str, expected: bool) -> None:
    assert matcher(cond)(ev("connect", SOCK)) is expected


@pytest.mark.parametrize("cond, expected", [
    ("tolower(proc.name) = bash", True), ("toupper(proc.name) = BASH", True),
    ("toupper(proc.name) = bash", False), ("len(proc.name) = 4", True),
    ("len(proc.name) > 4", False), ("basename(fd.name) = shadow", True),
    ("basename(proc.cwd) = ''", True),
    ("b64(evt.arg.data64) = hello", True), ("toupper(b64(evt.arg.data64)) = HELLO", True),
    ("proc.name = val(proc.pname)", False), ("proc.name != val(proc.pname)", True),
    ("tolower(proc.name) = tolower(evt.arg.upper)", True),
    ("proc.name startswith val(evt.arg.prefix)", True),
])
def test_transformers_and_val(cond: str, expected: bool) -> None:
    t = proc("bash", "/usr/bin/bash", cwd="/srv/", ancestors=[proc("sshd")])
    e = ev(thread=t, args={"data64": "aGVsbG8=", "upper": "BASH", "prefix": "ba"})
    assert matcher(cond)(e) is expected


@pytest.fixture(params=["codegen", "closures"])
def both_compilers(request, monkeypatch):
    import falconet.rules.loader as loader_mod
    monkeypatch.setattr(loader_mod, "USE_CODEGEN", request.param == "codegen")
    return request.param


def test_missing_values_three_way_semantics(both_compilers) -> None:
    e = ev(fd=None)                    # no fd: every fd.* field is missing
    assert matcher("fd.name = /etc/shadow")(e) is False
    assert matcher("fd.name != /etc/shadow")(e) is False
    assert matcher("not fd.name = /etc/shadow")(e) is True
    assert matcher("fd.name exists")(e) is False
    assert matcher("not fd.name exists")(e) is True
    assert matcher("fd.name in (a, b)")(e) is False
    assert matcher("not fd.name in (a, b)")(e) is True
    assert matcher("fd.num < 100")(e) is False
    assert matcher("fd.name pmatch (/)")(e) is False
    assert matcher("proc.name = val(user.loginname)")(e) is False
    assert matcher("proc.name != val(user.loginname)")(e) is False
    assert matcher("tolower(fd.name) = x")(e) is False


def test_ancestors_are_existential(both_compilers) -> None:
    # ancestors of BASH: sshd, systemd (the process itself is not included)
    e = ev()
    assert matcher("proc.aname = sshd")(e) is True
    assert matcher("proc.aname = systemd")(e) is True
    assert matcher("proc.aname = bash")(e) is False
    assert matcher("proc.aname != sshd")(e) is True          # systemd is not sshd
    assert matcher("proc.aname in (cron, systemd)")(e) is True
    assert matcher("proc.aname startswith sys")(e) is True
    assert matcher("proc.aname[0] = bash")(e) is True
    assert matcher("proc.aname[1] = sshd")(e) is True
    assert matcher("proc.aname[2] = systemd")(e) is True
    assert matcher("proc.aname[3] = systemd")(e) is False
    assert matcher("proc.aname[3] exists")(e) is False
    assert matcher("proc.apid = 50")(e) is True
    orphan = ev(thread=proc("init"))
    assert matcher("proc.aname = x")(orphan) is False
    assert matcher("proc.aname != x")(orphan) is False


def test_list_fields_in_and_intersects(both_compilers) -> None:
    t = proc("bash")
    t.fds = {0: FdInfo(0, "f"), 1: FdInfo(1, "4")}
    e = ev(thread=t)
    assert matcher("fd.types in (f, 4, u)")(e) is True       # every value in the set
    assert matcher("fd.types in (f)")(e) is False
    assert matcher("fd.types intersects (f)")(e) is True     # at least one
    assert matcher("fd.types intersects (p)")(e) is False
    assert matcher("fd.types exists")(e) is True
    assert matcher("len(fd.types) = 2")(e) is True


@pytest.mark.parametrize("cond, msg", [
    ("user.uid contains 1", "filter error: 'contains' operator not supported for numeric filters"),
    ("user.uid startswith 1", "'startswith' operator not supported for numeric filters"),
    ("fd.connected contains t", "'contains' operator not supported for boolean filters"),
    ("fd.sip startswith 10", "'startswith' operator not supported for ip address and network"),
    ("proc.name bcontains 6869", "'bcontains' operator not supported for string filters"),
    ("evt.buffer bcontains xyz", "bcontains and bstartswith operator support hex strings only"),
    ("fd.types = f", "'=' operator not supported for list filters"),
    ("user.uid = abc", "'abc' is not a valid number"),
    ("fd.connected = maybe", "'maybe' is not a valid boolean"),
    ("fd.sip = not.an.ip", "is not a valid IP address"),
    ("proc.nme = bash", "filter_check called with nonexistent field proc.nme"),
    ("proc.name[1] = bash", "does not take an argument"),
    ("evt.arg exists", "requires an argument"),
    ("toupper(user.uid) = 1", "transformer 'toupper' is not supported on uint32 fields"),
    ("toupper(proc.aname) = X", "does not support transformer"),
    ("proc.name = val(proc.aname)", "does not support val()"),
    ("fd.name regex '('", "invalid regular expression"),
    ("proc.name = foo and undefined_macro", "Undefined macro 'undefined_macro' used in filter."),
    ("proc.name in some_list_name", "unexpected identifier 'some_list_name'"),
    ("tolower(evt.type) = open", "evt.type can not be used with a transformer"),
])
def test_compile_errors(cond: str, msg: str) -> None:
    from rulehelp import rule
    errs = errors(rule(cond))
    assert any(msg in e for e in errs), errs


def test_bytes_operators() -> None:
    e = ev("write", args={"data": b"hello world"})
    assert matcher("evt.buffer bcontains 776f726c64")(e) is True    # "world"
    assert matcher("evt.buffer bstartswith 68656c6c6f")(e) is True  # "hello"
    assert matcher("evt.buffer bstartswith 776f")(e) is False
    assert matcher("evt.buffer contains world")(e) is True
    assert matcher("len(evt.buffer) = 11")(e) is True


def test_const_that_looks_like_field_warns() -> None:
    from rulehelp import rule, warnings
    ws = warnings(rule("proc.name = proc.pname"))
    assert any("'proc.pname' may be a valid field misused as a const string value" in w for w in ws)
    assert matcher("proc.name = proc.pname")(ev(thread=proc("proc.pname"))) is True


def test_regex_simple_pattern_warns() -> None:
    from rulehelp import rule, warnings
    ws = warnings(rule("proc.name regex bash"))
    assert any("may be optimized with simpler operators" in w for w in ws)


def test_b64_of_a_non_utf8_value_is_no_match_not_an_error() -> None:
    """A process name with bytes that are not UTF-8 (held with surrogate escapes) must not make
    ``b64()`` raise: that was a rule_error on every event of such a process (issue 11)."""
    from rulehelp import loaded, rule
    res = loaded(rule("b64(proc.name) = x or proc.name = z"))
    assert not res.ruleset.match(ev(thread=proc("\udcff\udcfeEVIL")))
    assert not res.ruleset.eval_errors
