"""engine.inventory against the real ansible-inventory, plus patterns and parse errors.

The parity tests are the contract: for each fixture under tests/unit/inventories/ our
``to_ansible_list()`` must equal what ``ansible-inventory --list`` prints, hosts, groups and
merged hostvars alike. Each ansible-inventory run costs about a second of startup, so all
of them are started at once by one module fixture and the tests only read the results.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from engine.inventory import Host, Inventory, InventoryError, UnsafeText, load_inventory

HERE = Path(__file__).parent
FIXTURES = HERE / "inventories"
REPO = HERE.parent.parent
EXAMPLES = REPO / "inventory"

# (inventory, extra ansible-inventory args). Keep this list short: ~1 s per entry.
LIST_CASES = [
    "ranges.ini",
    "children.ini",
    "hostvars_types.ini",
    "nested.yml",
    "with_vars/hosts",
    "priority.yml",
]
HOST_CASES = [
    ("hostvars_types.ini", "typed1"),
    ("with_vars/hosts", "web2"),
    ("priority.yml", "multi"),
    ("nested.yml", "staging1.example.com"),
]
LIMIT_CASES = [("children.ini", "production:!db*:&backend")]


def _ansible_command() -> list[str] | None:
    exe = shutil.which("ansible-inventory")
    if exe:
        return [exe]
    if importlib.util.find_spec("ansible") is not None:
        return [sys.executable, "-m", "ansible.cli.inventory"]
    return None


def _calls() -> dict[tuple[str, ...], list[str]]:
    calls: dict[tuple[str, ...], list[str]] = {}
    for inv in LIST_CASES:
        calls[("list", inv)] = ["-i", str(FIXTURES / inv), "--list"]
    for inv, host in HOST_CASES:
        calls[("host", inv, host)] = ["-i", str(FIXTURES / inv), "--host", host]
    for inv, pattern in LIMIT_CASES:
        calls[("limit", inv, pattern)] = ["-i", str(FIXTURES / inv), "--list", "--limit", pattern]
    calls[("list", "production.yml")] = ["-i", str(EXAMPLES / "production.yml"), "--list"]
    return calls


@pytest.fixture(scope="module")
def ansible(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, ...], Any]:
    """Parsed JSON of every ansible-inventory call above, run in parallel."""
    command = _ansible_command()
    if command is None:
        pytest.skip("ansible-core is not installed")
    workdir = tmp_path_factory.mktemp("ansible")
    empty_cfg = workdir / "ansible.cfg"
    empty_cfg.write_text("")
    # A clean Ansible: no ansible.cfg from the cwd or home, no ANSIBLE_* settings from the caller.
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(
        ANSIBLE_CONFIG=str(empty_cfg),
        ANSIBLE_LOCALHOST_WARNING="False",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="False",
        ANSIBLE_LOCAL_TEMP=str(workdir / "tmp"),
    )
    procs = {
        key: subprocess.Popen(
            [*command, *args], cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for key, args in _calls().items()
    }
    results: dict[tuple[str, ...], Any] = {}
    for key, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"ansible-inventory {key} failed: {err}"
        results[key] = json.loads(out)
    return results


def load(name: str) -> Inventory:
    return load_inventory(FIXTURES / name)


# --------------------------------------------------------------------------------------
# Parity with ansible-inventory
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("inv", LIST_CASES)
def test_list_parity(inv: str, ansible: dict[tuple[str, ...], Any]) -> None:
    expected = ansible[("list", inv)]
    ours = load(inv).to_ansible_list()
    # Compare piecewise first for readable failures, then the whole document.
    assert ours["_meta"]["hostvars"] == expected["_meta"]["hostvars"]
    assert {k: v for k, v in ours.items() if k != "_meta"} == {
        k: v for k, v in expected.items() if k != "_meta"
    }
    assert ours == expected


@pytest.mark.parametrize(("inv", "host"), HOST_CASES)
def test_host_parity(inv: str, host: str, ansible: dict[tuple[str, ...], Any]) -> None:
    assert load(inv).host_vars_json(host) == ansible[("host", inv, host)]


@pytest.mark.parametrize(("inv", "pattern"), LIMIT_CASES)
def test_limit_parity(inv: str, pattern: str, ansible: dict[tuple[str, ...], Any]) -> None:
    assert load(inv).limit(pattern).to_ansible_list() == ansible[("limit", inv, pattern)]


def test_production_example_parity(ansible: dict[tuple[str, ...], Any]) -> None:
    assert (
        load_inventory(EXAMPLES / "production.yml").to_ansible_list() == ansible[("list", "production.yml")]
    )


# --------------------------------------------------------------------------------------
# What the fixtures pin down, spelled out (these also document the behaviour)
# --------------------------------------------------------------------------------------


def test_ranges_expand_with_padding_letters_and_strides() -> None:
    inv = load("ranges.ini")
    names = list(inv.hosts)
    assert names[:3] == ["web01.prod.example.com", "web02.prod.example.com", "web03.prod.example.com"]
    assert "web12.prod.example.com" in names and "web13.prod.example.com" not in names
    assert inv.groups["db"].hosts == ["db-a", "db-b", "db-c"]
    assert inv.groups["cache"].hosts == [
        "cache1",
        "cache4",
        "cache7",
        "cache10",
        "node001",
        "node005",
        "node009",
    ]
    assert inv.groups["racks"].hosts[:4] == ["rack1-swa", "rack1-swb", "rack2-swa", "rack2-swb"]
    assert inv.groups["edge"].hosts == ["edge0", "edge1", "edge2"]
    assert inv.hosts["api2"].port == 8443
    assert inv.hosts["db-b"].user == "postgres"


def test_ini_value_typing() -> None:
    typed1 = load("hostvars_types.ini").hosts["typed1"].vars
    assert typed1["port_int"] == 8080 and typed1["ratio"] == 0.75
    assert typed1["enabled"] is True and typed1["disabled"] is False and typed1["nothing"] is None
    assert typed1["motto"] == "hello brave world" and typed1["single"] == "quoted string"
    assert typed1["items"] == ["a", "b", 3] and typed1["mapping"] == {"k": "v", "n": 2}
    assert typed1["pair"] == [1, 2]  # tuples become lists
    assert typed1["zero_padded"] == "007" and typed1["word"] == "yes" and typed1["empty"] == ""
    assert typed1["hex"] == 31 and typed1["negative"] == -5
    # [g:vars] values are typed the same way, but the line is not shlex-split
    assert typed1["group_int"] == 42 and typed1["group_list"] == [1, "two"]
    assert typed1["group_text"] == "spaces are kept # and so is this"
    assert typed1["group_int_comment"] == 7
    others = load("hostvars_types.ini").hosts
    assert others["typed2"].vars["cut_at_hash"] == "a"  # shlex treats # as a comment, even mid-word
    assert others["typed3"].vars["version"] == 1.1 and others["typed3"].vars["lowercase_bool"] == "true"


def test_host_connection_properties() -> None:
    hosts = load("hostvars_types.ini").hosts
    assert (hosts["typed2"].address, hosts["typed2"].port, hosts["typed2"].user) == (
        "192.0.2.10",
        2222,
        "deploy",
    )
    assert (hosts["typed1"].address, hosts["typed1"].port, hosts["typed1"].user) == ("typed1", 22, None)


def test_children_precedence_and_groups() -> None:
    inv = load("children.ini")
    web2 = inv.hosts["web2"]
    assert web2.groups == ["app", "backend", "frontend", "production", "web"]
    assert web2.vars["tier"] == "web"  # app and web both at depth 3; later name wins
    assert inv.hosts["web1"].vars["tier"] == "host"  # host vars beat every group
    assert inv.hosts["db2"].vars["tier"] == "replica" and inv.hosts["db1"].vars["tier"] == "databases"
    assert inv.hosts["mon1"].vars == {"env": "dev", "tier": "all", "ntp_server": "ntp.example.com"}
    assert inv.groups["production"].children == ["frontend", "backend"]
    assert inv.groups["databases"].depth == 3 and inv.groups["production"].depth == 1
    assert inv.groups["ungrouped"].hosts == ["top-level.example.com"]


def test_group_vars_files_beat_inventory_group_vars() -> None:
    inv = load("with_vars/hosts")
    web2, app1 = inv.hosts["web2"], inv.hosts["app1"]
    assert web2.vars["shared"] == "web-file" and app1.vars["shared"] == "cluster-file"
    assert web2.vars["http_port"] == 8080 and "never_read" not in web2.vars
    assert web2.vars["inline"] == "web2-file" and web2.user == "admin"  # host_vars beat inline vars
    assert app1.vars["inline"] == "app1-dir-b" and app1.vars["only_a"] == 1  # dir files in sorted order
    assert app1.vars["ratio"] == 1000.0  # .json read as JSON
    assert app1.vars["ansible_group_priority"] == 50  # a plain variable when it comes from a file
    assert inv.groups["web"].vars["shared"] == "web-file"  # Group.vars: inventory then files


def test_group_priority() -> None:
    inv = load("priority.yml")
    assert inv.hosts["multi"].vars == {"owner": "alpha"}
    assert inv.hosts["nested"].vars == {"owner": "child", "layer": "parent"}
    assert inv.groups["alpha"].priority == 10 and inv.groups["alpha"].vars["ansible_group_priority"] == 10


def test_yaml_values() -> None:
    inv = load("nested.yml")
    staging = inv.hosts["staging1.example.com"].vars
    assert staging["debug"] is True
    assert isinstance(staging["template"], UnsafeText) and staging["template"] == "{{ not_templated }}"
    assert inv.host_vars_json("staging1.example.com")["started"] == "2024-01-15"
    assert inv.hosts["app-a.example.com"].vars["tier"] == "canary-host"
    assert inv.hosts["web04.example.com"].vars["http_port"] == 9090
    assert inv.groups["empty_group"].hosts == []


def test_directory_inventory(tmp_path: Path) -> None:
    (tmp_path / "10-web.ini").write_text("[web]\nw1\nw2\n")
    (tmp_path / "20-db.yml").write_text("all:\n  children:\n    db:\n      hosts:\n        d1: {x: 1}\n")
    (tmp_path / "README.md").write_text("# not an inventory\n")
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "web.yml").write_text("role: web\n")
    inv = load_inventory(tmp_path)
    assert list(inv.hosts) == ["w1", "w2", "d1"]
    assert inv.hosts["w1"].vars == {"role": "web"} and inv.hosts["d1"].vars == {"x": 1}


# --------------------------------------------------------------------------------------
# Host patterns
# --------------------------------------------------------------------------------------


def names(hosts: list[Host]) -> list[str]:
    return [h.name for h in hosts]


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        (
            "all",
            ["top-level.example.com", "web1", "web2", "lb1", "app1", "app2", "db1", "db2", "db3", "mon1"],
        ),
        ("web*", ["web1", "web2"]),
        ("db?", ["db1", "db2", "db3"]),
        ("web:lb", ["web1", "web2", "lb1"]),
        ("lb,web", ["web1", "web2", "lb1"]),  # inventory order, not pattern order
        ("app:&web", ["web2"]),
        ("frontend:!web2", ["web1", "lb1"]),
        ("all:!db2", ["top-level.example.com", "web1", "web2", "lb1", "app1", "app2", "db1", "db3", "mon1"]),
        ("~^db[12]$", ["db1", "db2"]),
        ("!production:!ungrouped", ["mon1"]),  # only exclusions: start from all
        ("!web:monitoring", ["mon1"]),  # unions first, then exclusions, whatever the written order
        ("&monitoring:web:lb", ["web1"]),
        ("databases[0]", ["db1"]),
        ("databases[1:]", ["db2", "db3"]),
        ("nosuchhost", []),
        ("web:nosuchgroup", ["web1", "web2"]),
        ("zz*", []),
    ],
)
def test_match(pattern: str, expected: list[str]) -> None:
    assert names(load("children.ini").match(pattern)) == expected


def test_match_dedups_and_limit() -> None:
    inv = load("children.ini")
    assert names(inv.match("web1,web1,web,monitoring")) == ["web1", "web2", "mon1"]
    limited = inv.limit("frontend")
    assert list(limited.hosts) == ["web1", "web2", "lb1"]
    assert names(limited.match("web2:app")) == ["web2"]
    assert (
        limited.groups["app"].hosts == ["web2"]
        and "db1" not in limited.to_ansible_list()["_meta"]["hostvars"]
    )


@pytest.mark.parametrize("pattern", ["", "  ", "web:&", "!", "web[1", "~web(", "databases[9]"])
def test_malformed_patterns(pattern: str) -> None:
    with pytest.raises(InventoryError):
        load("children.ini").match(pattern)


# --------------------------------------------------------------------------------------
# Parse errors carry file:line
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "text", "line", "message"),
    [
        ("bad.ini", "[web]\nw1\n\n[web:nonsense]\nx=1\n", 4, "unknown type: nonsense"),
        ("bad.ini", "[web]\nw1\nweb[01:5]\n", 3, "equal-length"),
        ("bad.ini", "[web]\nweb[9:1]\n", 2, "begin <= end"),
        ("bad.ini", "[web]\nweb[1:4:0]\n", 2, "step"),
        ("bad.ini", "[a:children]\nb\n[b:children]\na\n", 4, "recursive dependency loop"),
        ("bad.ini", "[a:children]\nb\nc\n[b]\nh\n", 3, "undefined group 'c'"),
        ("bad.ini", "[a]\nh\n[zz:vars]\nx=1\n", 3, "undefined group 'zz'"),
        ("bad.ini", "[a]\nh\n[a:vars]\nnovalue\n", 4, "expected key=value"),
        ("bad.ini", "[a]\nh ok=1 bad\n", 2, "expected key=value host variable"),
        ("bad.ini", '[a]\nh x="unclosed\n', 2, "No closing quotation"),
        ("bad.ini", "[a]\nh\n[b c]\n", 3, "invalid section entry"),
        ("bad.ini", "[a]\nh\n[a:vars]\nansible_group_priority=high\n", 4, "must be an integer"),
        ("bad.yml", "all:\n  hosts:\n    - a\n", 2, 'invalid "hosts" entry'),
        ("bad.yml", "all:\n  children:\n    a:\n      hosts:\n        123:\n", 5, "must be a string"),
        ("bad.yml", "all:\n  children:\n    a:\n      children:\n        a:\n", 5, "child of itself"),
        ("bad.yml", "all:\n  hosts:\n    a: {x: 1\n    b:\n", 4, "invalid YAML"),
    ],
)
def test_parse_errors(tmp_path: Path, filename: str, text: str, line: int, message: str) -> None:
    path = tmp_path / filename
    path.write_text(text)
    with pytest.raises(InventoryError) as excinfo:
        load_inventory(path)
    err = excinfo.value
    assert (err.path, err.line) == (str(path), line)
    assert message in err.message
    assert str(err).startswith(f"{path}:{line}: ")


def test_vars_file_error_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "hosts.ini").write_text("[web]\nw1\n")
    (tmp_path / "group_vars").mkdir()
    bad = tmp_path / "group_vars" / "web.yml"
    bad.write_text("ok: 1\nbroken: [\n")
    with pytest.raises(InventoryError) as excinfo:
        load_inventory(tmp_path / "hosts.ini")
    assert excinfo.value.path == str(bad) and excinfo.value.line is not None


def test_missing_inventory(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match="not found"):
        load_inventory(tmp_path / "nope.ini")


# --------------------------------------------------------------------------------------
# The example inventories shipped in inventory/
# --------------------------------------------------------------------------------------

EXAMPLE_FILES = sorted(p.name for p in EXAMPLES.glob("*") if p.suffix in (".ini", ".yml", ".yaml"))
PLATFORM_GROUPS = {
    "loadbalancers",
    "appservers",
    "db_primary",
    "db_replica",
    "databases",
    "redis",
    "monitoring",
    "logging",
}


def test_examples_exist() -> None:
    assert set(EXAMPLE_FILES) >= {
        "production.yml",
        "production.ini",
        "staging.yml",
        "staging.ini",
        "local.yml",
        "local.ini",
    }


@pytest.mark.parametrize("name", EXAMPLE_FILES)
def test_example_loads(name: str) -> None:
    inv = load_inventory(EXAMPLES / name)
    assert inv.hosts and not inv.warnings
    assert set(inv.groups) >= PLATFORM_GROUPS
    assert inv.groups["databases"].children == ["db_primary", "db_replica"]
    for host in inv.hosts.values():
        assert host.groups, f"{host.name} is in no group"
        assert not any("password" in key or "secret" in key for key in host.vars), host.name


@pytest.mark.parametrize("env", ["production", "staging", "local"])
def test_example_yaml_and_ini_are_the_same_inventory(env: str) -> None:
    yml = load_inventory(EXAMPLES / f"{env}.yml").to_ansible_list()
    ini = load_inventory(EXAMPLES / f"{env}.ini").to_ansible_list()
    assert ini == yml


def test_local_examples_run_everything_locally() -> None:
    for name in ("local.ini", "local.yml"):
        inv = load_inventory(EXAMPLES / name)
        assert all(h.vars.get("ansible_connection") == "local" for h in inv.hosts.values()), name


def test_production_example_shape() -> None:
    inv = load_inventory(EXAMPLES / "production.yml")
    app = inv.match("appservers")
    assert names(app) == [f"app0{i}.prod.unjucks.example" for i in range(1, 5)]
    assert app[0].vars["app_service"] == "unjucks-api" and app[0].vars["app_port"] == 3000
    assert app[0].vars["k8s_namespace"] == "unjucks-prod" and app[0].user == "deploy"
    primary = inv.match("db_primary")
    assert len(primary) == 1 and primary[0].vars["pg_version"] == 15


def _targets_inventory(tmp_path: Path) -> Inventory:
    path = tmp_path / "hosts.ini"
    path.write_text("[web]\nweb1\nweb2\n\n[db]\ndb1\n")
    return load_inventory(path)


def test_targets_pick_the_pattern_narrowed_by_limit(tmp_path: Path) -> None:
    inv = _targets_inventory(tmp_path)
    assert [h.name for h in inv.targets("web")[0]] == ["web1", "web2"]
    assert inv.targets("web")[1] is None
    hosts, note = inv.targets("web", "web2:db1")
    assert ([h.name for h in hosts], note) == (["web2"], None)


def test_targets_say_why_none_is_left_or_refuse(tmp_path: Path) -> None:
    inv = _targets_inventory(tmp_path)
    assert inv.targets("?cache") == ([], "no host matches the optional pattern 'cache'")
    assert inv.targets("web", "db1") == ([], "--limit 'db1' leaves none of the 2 host(s) of 'web'")
    with pytest.raises(InventoryError, match=r"no host in the inventory matches 'cache' \(write on: \"\?cache\""):
        inv.targets("cache")
    with pytest.raises(InventoryError, match="--limit 'nosuch' matches no host in the inventory"):
        inv.targets("?cache", "nosuch")
