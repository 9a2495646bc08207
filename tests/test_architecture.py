"""Layering: fail on an import that goes the wrong way.

Every .py file under bridge/, bot/ and bench/ is parsed (not imported) and every import
in it is collected: module level, inside functions, under ``if TYPE_CHECKING:``, in
``try`` blocks, relative ones resolved, plus ``importlib.import_module("…")`` and
``__import__("…")`` calls with a literal name. Layers are the packages under bridge/:

- capabilities (CAPABILITIES): may import bridge.core, the shared packages, bot and
  their own package, never another capability nor a top-level module;
- shared (SHARED): bridge.core and their own package only;
- bridge.core (and the bridge/__init__.py root, which runs before any bridge import):
  bridge.core only;
- top level (TOP_LEVEL): anything in bridge/ and bot/; a capability's ``cli.py`` (its
  ``santeguard`` subcommands, reached only from bridge/cli.py) is an entry point and
  held to this rule too.

A folder or module under bridge/ that is in none of these lists is reported too, so a
new package gets a layer when it is added (a new capability is one edit: CAPABILITIES).
Every violation is listed at once in the failure message.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest

CAPABILITIES: tuple[str, ...] = (
    "spine",
    "gate",
    "identity",
    "e2ee",
    "audit",
    "commands",
    "mail",
    "retention",
    "report",
    "cluster",
)
SHARED: tuple[str, ...] = ("db", "matrix", "ops")  # plus core, which has its own rule
TOP_LEVEL: tuple[str, ...] = (
    "app",  # bridge/app.py or bridge/app/
    "cli",
    "__main__",
    "config",
    "registration",
    "homeserver_check",
    "devtools",
)
# Modules that decide from facts alone; every bridge/**/policy.py is added to these.
PURE_MODULES: tuple[str, ...] = (
    "bridge/gate/policy.py",
    "bridge/spine/validate.py",
    "bridge/identity/identifiers.py",
    "bridge/identity/matching.py",
    "bridge/identity/model.py",
    "bridge/identity/sources/extract/parse.py",
    "bridge/identity/sources/fhir/mapping.py",
    "bridge/audit/chain.py",
    "bridge/audit/seal.py",
    "bridge/audit/verify.py",
    "bridge/core/decision.py",
    "bridge/core/antispam.py",
    "bridge/core/professions.py",
    "bridge/spine/routes.py",
    "bridge/spine/ephemeral.py",
    "bridge/mail/mime.py",
    "bridge/mail/mdn.py",
    "bridge/mail/xdm.py",
    "bridge/mail/xdm_build.py",
    "bridge/mail/allowlist.py",
    "bridge/mail/sanitize.py",
    "bridge/mail/ghosts.py",
)
IO_LIBRARIES: tuple[str, ...] = (
    "aiohttp",
    "asyncpg",
    "aiosqlite",
    "sqlite3",
    "mautrix",
    "nio",
    "socket",
    "subprocess",
)
SCANNED: tuple[str, ...] = ("bridge", "bot", "bench")

ROOT = Path(__file__).resolve().parent.parent

RULES = {
    0: "every bridge/ package or module is listed in CAPABILITIES, SHARED, TOP_LEVEL or is core",
    1: "bot imports nothing from bridge, tests or bench",
    2: "bridge.core imports only bridge.core (not bot either)",
    3: "a shared package imports only bridge.core and itself",
    4: "a capability imports only bridge.core, bridge.db, bridge.matrix, bridge.ops, bot "
    "and itself",
    5: "bench does not import tests; bridge does not import tests or bench",
    6: "a pure module imports no I/O library",
}


@dataclass(frozen=True, order=True)
class Import:
    line: int
    module: str  # absolute dotted name of what is imported


@dataclass(frozen=True, order=True)
class Violation:
    path: str
    line: int
    module: str
    rule: int
    detail: str = ""

    def __str__(self) -> str:
        extra = f"; {self.detail}" if self.detail else ""
        return (
            f"{self.path}:{self.line} → {self.module} (rule {self.rule}: {RULES[self.rule]}{extra})"
        )


# ---------------------------------------------------------------------------
# Collecting imports


def module_name(path: str) -> str:
    """bridge/gate/policy.py → bridge.gate.policy; bridge/gate/__init__.py → bridge.gate."""
    parts = list(PurePosixPath(path).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_of(path: str) -> str:
    """The package a relative import in ``path`` starts from."""
    name = module_name(path)
    if PurePosixPath(path).name == "__init__.py":
        return name
    return name.rpartition(".")[0]


class UnresolvableImport(ValueError):
    pass


def resolve(path: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = package_of(path).split(".") if package_of(path) else []
    up = node.level - 1
    if up > len(base) or (up == len(base) and not node.module):
        raise UnresolvableImport(f"relative import beyond the top package in {path}")
    base = base[: len(base) - up]
    return ".".join([*base, *([node.module] if node.module else [])])


IMPORT_CALLS = frozenset({"import_module", "__import__"})


def collect_imports(path: str, source: str, known_modules: frozenset[str]) -> list[Import]:
    """Every import in ``source``; ``from pkg import name`` gives pkg.name when that is a
    module of the scanned tree (``from bridge import gate``), else pkg."""
    tree = ast.parse(source, filename=path)
    found: list[Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(Import(node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = resolve(path, node)
            for alias in node.names:
                sub = f"{base}.{alias.name}" if base else alias.name
                target = sub if alias.name != "*" and sub in known_modules else base
                found.append(Import(node.lineno, target))
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            first = node.args[0]
            if (
                name in IMPORT_CALLS
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
                and not first.value.startswith(".")
            ):
                found.append(Import(node.lineno, first.value))
    return sorted(set(found))


# ---------------------------------------------------------------------------
# Layers


@dataclass(frozen=True)
class Layer:
    kind: str  # bot, bench, tests, core, shared, capability, top, root, unlisted, external
    package: str = ""  # bridge.<name> for bridge layers


def layer_of(module: str, capabilities: Iterable[str]) -> Layer:
    parts = module.split(".")
    head = parts[0]
    if head in ("bot", "bench", "tests"):
        return Layer(head, head)
    if head != "bridge":
        return Layer("external", head)
    if len(parts) == 1:
        return Layer("root", "bridge")
    name = parts[1]
    package = f"bridge.{name}"
    if name == "core":
        return Layer("core", package)
    if name in SHARED:
        return Layer("shared", package)
    if name in tuple(capabilities):
        if parts[-1] == "cli":
            return Layer("top", package)  # a capability's command-line entry point
        return Layer("capability", package)
    if name in TOP_LEVEL:
        return Layer("top", package)
    return Layer("unlisted", package)


def is_pure(path: str) -> bool:
    p = PurePosixPath(path)
    return path in PURE_MODULES or (p.parts[0] == "bridge" and p.name == "policy.py")


def check_import(source: Layer, target: Layer) -> tuple[int, str] | None:
    """The rule broken (number, detail) by a ``source`` module importing from ``target``."""
    if target.kind == "external":
        return None
    if source.kind == "bot":
        return None if target.kind == "bot" else (1, "")
    if source.kind == "bench":
        return (5, "") if target.kind == "tests" else None
    # Every bridge layer from here on.
    if target.kind in ("tests", "bench"):
        return 5, ""
    if target.kind == "unlisted":
        return 0, f"{target.package} is in no layer"
    if source.kind in ("core", "root"):
        if target.kind == "core":
            return None
        if source.kind == "root":
            return 2, "bridge/__init__.py runs before any bridge import: held to core's rule"
        return 2, ""
    if source.kind == "shared":
        if target.kind == "core" or target.package == source.package:
            return None
        return 3, f"{source.package} is shared"
    if source.kind == "capability":
        if target.kind in ("core", "shared", "bot") or target.package == source.package:
            return None
        what = "another capability" if target.kind == "capability" else f"{target.kind} level"
        return 4, f"{source.package} → {what}"
    return None  # top level, or an unlisted source (already reported by itself)


def check(files: Mapping[str, str], capabilities: Iterable[str] = CAPABILITIES) -> list[Violation]:
    """All violations in ``files`` (relative POSIX path → source text)."""
    capabilities = tuple(capabilities)
    known = frozenset(module_name(p) for p in files)
    out: list[Violation] = []
    for path, text in sorted(files.items()):
        src = layer_of(module_name(path), capabilities)
        if src.kind == "unlisted":
            out.append(Violation(path, 1, module_name(path), 0, f"{src.package} is in no layer"))
        try:
            imports = collect_imports(path, text, known)
        except SyntaxError as e:
            out.append(Violation(path, e.lineno or 1, "?", 0, f"cannot parse: {e.msg}"))
            continue
        except UnresolvableImport as e:
            out.append(Violation(path, 1, "?", 0, str(e)))
            continue
        pure = is_pure(path)
        for imp in imports:
            tgt = layer_of(imp.module, capabilities)
            broken = check_import(src, tgt)
            if broken is not None:
                out.append(Violation(path, imp.line, imp.module, *broken))
            if pure and imp.module.split(".")[0] in IO_LIBRARIES:
                out.append(Violation(path, imp.line, imp.module, 6))
    return sorted(set(out))


def tree_files(root: Path = ROOT) -> dict[str, str]:
    files: dict[str, str] = {}
    for top in SCANNED:
        for p in sorted((root / top).rglob("*.py")):
            if "__pycache__" in p.parts:
                continue
            files[p.relative_to(root).as_posix()] = p.read_text(encoding="utf-8")
    return files


# ---------------------------------------------------------------------------
# The real tree


def test_no_wrong_way_imports() -> None:
    files = tree_files()
    assert any(p.startswith("bridge/") for p in files), "no source found: wrong ROOT?"
    violations = check(files)
    assert not violations, f"{len(violations)} wrong-way import(s):\n" + "\n".join(
        map(str, violations)
    )


def test_pure_modules_exist() -> None:
    # A renamed pure module would silently drop out of rule 6: keep the list honest.
    missing = [p for p in PURE_MODULES if not (ROOT / p).is_file()]
    assert not missing, f"PURE_MODULES lists missing files: {missing}"


def test_layer_lists_are_disjoint() -> None:
    names = [*CAPABILITIES, *SHARED, *TOP_LEVEL, "core"]
    assert len(names) == len(set(names))


# ---------------------------------------------------------------------------
# Self-test: the checker flags each rule on a synthetic tree

CLEAN = {
    "bot/__init__.py": "",
    "bot/commands.py": "import re\nfrom . import context\n",
    "bot/context.py": "",
    "bench/gate.py": "import bridge.gate.policy\nimport bot.commands\nimport aiohttp\n",
    "bridge/__init__.py": '__version__ = "0"\n',
    "bridge/core/__init__.py": "",
    "bridge/core/errors.py": "from . import ports\n",
    "bridge/core/ports.py": "from typing import Protocol\n",
    "bridge/db/__init__.py": "import asyncpg\nfrom bridge.core import errors\nfrom . import txn\n",
    "bridge/db/txn.py": "from bridge.core.errors import E\n",
    "bridge/matrix/client.py": "import aiohttp\nfrom ..core.ports import Protocol\n",
    "bridge/ops/metrics.py": "import prometheus_client\n",
    "bridge/gate/__init__.py": "",
    "bridge/gate/policy.py": "import re\nfrom bridge.core.errors import X\nfrom .store import Y\n",
    "bridge/gate/store.py": (
        "from bridge.db.txn import t\nfrom bridge.matrix.client import c\n"
        "from bridge.ops import metrics\nfrom bot.commands import command\n"
        "from . import policy\n"
    ),
    "bridge/spine/validate.py": "from typing import Any\n",
    "bridge/identity/identifiers.py": "import json\n",
    "bridge/app.py": (
        "import bridge.gate.store\nfrom bridge.identity import identifiers\n"
        "from bridge import cli, config\nimport bot\n"
    ),
    "bridge/cli.py": "from bridge.app import main\nfrom bridge.devtools import demo\n",
    "bridge/config.py": "",
    "bridge/devtools/demo.py": "import subprocess\nfrom bridge.e2ee import device\n",
    "bridge/e2ee/device.py": "import nio\n",
}


def test_clean_synthetic_tree_passes() -> None:
    assert check(CLEAN) == []


# A case adds one file to CLEAN; the checker must flag that file with (rule, module).
# id: (path, source, rule, module)
FLAGGED: dict[str, tuple[str, str, int, str]] = {
    "1-bot-bridge": ("bot/x.py", "import bridge.core.errors\n", 1, "bridge.core.errors"),
    "1-bot-root": ("bot/x.py", "from bridge import __version__\n", 1, "bridge"),
    "1-bot-tests": ("bot/x.py", "from tests.helpers import h\n", 1, "tests.helpers"),
    "1-bot-bench": ("bot/x.py", "import bench.gate\n", 1, "bench.gate"),
    "2-core-shared": ("bridge/core/x.py", "from bridge.db import txn\n", 2, "bridge.db.txn"),
    "2-core-relative": ("bridge/core/x.py", "from ..gate import policy\n", 2, "bridge.gate.policy"),
    "2-core-bot": ("bridge/core/x.py", "from bot import commands\n", 2, "bot.commands"),
    "2-root-is-core": ("bridge/__init__.py", "from bridge.app import main\n", 2, "bridge.app"),
    "3-shared-other-shared": (
        "bridge/db/x.py",
        "from bridge.ops.metrics import m\n",
        3,
        "bridge.ops.metrics",
    ),
    "3-shared-bot": ("bridge/ops/x.py", "import bot.commands\n", 3, "bot.commands"),
    "3-shared-capability": (
        "bridge/matrix/x.py",
        "from bridge.gate import store\n",
        3,
        "bridge.gate.store",
    ),
    "3-shared-top": ("bridge/db/x.py", "from bridge.config import Config\n", 3, "bridge.config"),
    "4-capability-capability": (
        "bridge/gate/x.py",
        "from bridge.identity.identifiers import p\n",
        4,
        "bridge.identity.identifiers",
    ),
    "4-inside-function": (
        "bridge/gate/x.py",
        "def f():\n    from bridge.audit.log import write\n",
        4,
        "bridge.audit.log",
    ),
    "4-under-type-checking": (
        "bridge/spine/x.py",
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from bridge.e2ee.device import D\n",
        4,
        "bridge.e2ee.device",
    ),
    "4-capability-app-relative": ("bridge/spine/x.py", "from .. import app\n", 4, "bridge.app"),
    "4-capability-cli": ("bridge/commands/x.py", "import bridge.cli\n", 4, "bridge.cli"),
    "4-capability-config": (
        "bridge/e2ee/x.py",
        "from bridge.config import C\n",
        4,
        "bridge.config",
    ),
    "4-capability-devtools": (
        "bridge/audit/x.py",
        "from bridge.devtools.stack import S\n",
        4,
        "bridge.devtools.stack",
    ),
    "4-importlib-call": (
        "bridge/identity/x.py",
        "import importlib\nm = importlib.import_module('bridge.gate.policy')\n",
        4,
        "bridge.gate.policy",
    ),
    "5-bench-tests": ("bench/x.py", "from tests.helpers import h\n", 5, "tests.helpers"),
    "5-bridge-tests": ("bridge/app.py", "import tests.helpers\n", 5, "tests.helpers"),
    "5-bridge-bench": ("bridge/gate/x.py", "from bench import gate\n", 5, "bench.gate"),
    "6-pure-aiohttp": ("bridge/gate/policy.py", "import aiohttp\n", 6, "aiohttp"),
    "6-pure-mautrix": (
        "bridge/spine/validate.py",
        "from mautrix.types import E\n",
        6,
        "mautrix.types",
    ),
    "6-pure-in-function": (
        "bridge/identity/identifiers.py",
        "def f():\n    import sqlite3\n",
        6,
        "sqlite3",
    ),
    "6-any-policy-py": ("bridge/audit/policy.py", "import asyncpg.pool\n", 6, "asyncpg.pool"),
    "6-from-socket": ("bridge/gate/policy.py", "from socket import socket\n", 6, "socket"),
    "0-unlisted-package": ("bridge/fax/x.py", "import re\n", 0, "bridge.fax.x"),
    "0-unlisted-target": (
        "bridge/gate/x.py",
        "from bridge.fax import r\n",
        0,
        "bridge.fax",
    ),
    "0-unparsable": ("bridge/gate/x.py", "def f(:\n", 0, "?"),
}


@pytest.mark.parametrize(("path", "source", "rule", "module"), FLAGGED.values(), ids=FLAGGED)
def test_checker_flags_each_rule(path: str, source: str, rule: int, module: str) -> None:
    flagged = [(v.rule, v.module) for v in check({**CLEAN, path: source}) if v.path == path]
    assert (rule, module) in flagged, flagged


def test_checker_reports_every_violation_with_line() -> None:
    src = "import re\nfrom bridge.gate import store\n\n\ndef f():\n    import aiohttp\n"
    got = check({**CLEAN, "bridge/spine/validate.py": src})
    assert [str(v) for v in got] == [
        "bridge/spine/validate.py:2 → bridge.gate.store (rule 4: "
        f"{RULES[4]}; bridge.spine → another capability)",
        f"bridge/spine/validate.py:6 → aiohttp (rule 6: {RULES[6]})",
    ]


def test_adding_a_capability_is_one_edit() -> None:
    files = {
        **CLEAN,
        "bridge/fax/send.py": "from bridge.gate import store\nfrom bridge.db import txn\n",
    }
    without = check(files)
    assert {v.rule for v in without if v.path == "bridge/fax/send.py"} == {0}
    with_fax = check(files, capabilities=(*CAPABILITIES, "fax"))
    assert [(v.path, v.module, v.rule) for v in with_fax] == [
        ("bridge/fax/send.py", "bridge.gate.store", 4)
    ]


def test_relative_imports_resolve() -> None:
    known = frozenset({"bridge.gate.store", "bridge.core.ports", "bridge.gate"})
    src = (
        "from . import store\n"
        "from ..core.ports import P\n"
        "from .policy import x\n"
        "from .. import gate\n"
    )
    got = [i.module for i in collect_imports("bridge/gate/policy.py", src, known)]
    assert got == ["bridge.gate.store", "bridge.core.ports", "bridge.gate.policy", "bridge.gate"]
    init = collect_imports("bridge/gate/__init__.py", "from .store import S\n", known)
    assert [i.module for i in init] == ["bridge.gate.store"]
