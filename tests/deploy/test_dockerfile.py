"""The Dockerfile (it cannot be built here: no registry for the base image), read as
Docker reads it: two stages, compilers only in the builder, a non-root user, the
`santeguard` entry point; and it agrees with the Helm chart and pyproject.toml."""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field

from bridge.config import AppserviceConfig
from tests.deploy.chart import MINIMAL, ROOT, render

COMPILERS = re.compile(r"\b(build-essential|gcc|g\+\+|clang|cpp|make|rustc|cargo|golang)\b")


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def parse_dockerfile(text: str) -> list[Stage]:
    """Instructions per stage: comments dropped, continuation lines joined."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    assert not pending, "a continuation line ends the file"
    stages: list[Stage] = []
    for line in lines:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        args = args.strip()
        if keyword == "FROM":
            parts = args.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(image=parts[0], name=name))
            continue
        assert stages, f"{keyword} before FROM"
        stages[-1].instructions.append((keyword, args))
    return stages


def _stages() -> list[Stage]:
    return parse_dockerfile((ROOT / "Dockerfile").read_text(encoding="utf-8"))


def test_multi_stage_and_no_compilers_in_the_final_image() -> None:
    stages = _stages()
    assert len(stages) == 2
    builder, final = stages
    assert builder.image == "python:3.11-slim" and builder.name == "builder"
    assert final.image == "python:3.11-slim"
    assert any(COMPILERS.search(run) for run in builder.all("RUN")), "the builder compiles"
    assert any("pip wheel" in run for run in builder.all("RUN"))
    for run in final.all("RUN"):
        assert not COMPILERS.search(run), run
        assert "apt-get install" not in run and "apk add" not in run
    # The final stage takes only the builder's wheels, never from an index.
    installs = [run for run in final.all("RUN") if "pip install" in run]
    assert len(installs) == 1
    assert "--no-index" in installs[0] and "from=builder" in installs[0]
    assert not [c for c in final.all("COPY") if "--from=builder" in c and "/src" in c]


def test_the_parser_sees_a_compiler() -> None:
    """The checks above can fail: a compiler installed in the final stage is seen."""
    text = "FROM python:3.11-slim AS b\nRUN true\nFROM python:3.11-slim\n" + (
        "RUN apt-get update \\\n    && apt-get install -y gcc\n"
    )
    final = parse_dockerfile(text)[1]
    assert any(COMPILERS.search(run) for run in final.all("RUN"))


def test_non_root_user_shared_with_the_chart() -> None:
    final = _stages()[-1]
    (user,) = final.all("USER")
    uid = user.split(":")[0]
    assert uid == "10001"
    rel = render(MINIMAL)
    pod = rel.deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == int(uid)
    assert rel.container["securityContext"]["runAsUser"] == int(uid)
    env = " ".join(final.all("ENV"))
    assert "PYTHONDONTWRITEBYTECODE=1" in env  # nothing written under site-packages


def test_entrypoint_runs_santeguard_like_the_chart() -> None:
    final = _stages()[-1]
    (entrypoint,) = final.all("ENTRYPOINT")
    (cmd,) = final.all("CMD")
    assert json.loads(entrypoint) == ["santeguard"]
    assert json.loads(cmd) == ["run", "-c", "/etc/santeguard/config.yaml"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "scripts"
    ]
    assert scripts["santeguard"] == "bridge.cli:main"
    from bridge import cli

    assert callable(cli.main)
    container = render(MINIMAL).container
    assert [*container["command"], *container["args"]] == [
        *json.loads(entrypoint),
        *json.loads(cmd),
    ]


def test_exposed_port_is_the_appservice_port() -> None:
    final = _stages()[-1]
    (expose,) = final.all("EXPOSE")
    port = int(expose.split("/")[0])
    assert port == AppserviceConfig.model_fields["port"].default == 29340
    ports = render(MINIMAL).container["ports"]
    assert [p["containerPort"] for p in ports] == [port]


def test_build_context_holds_what_the_builder_copies() -> None:
    builder = _stages()[0]
    ignore = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    rules = [line.strip() for line in ignore if line.strip() and not line.startswith("#")]
    assert rules[0] == "*"  # everything is left out but what is named
    allowed = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    for copy in builder.all("COPY"):
        *sources, _dest = copy.split()
        for source in sources:
            assert (ROOT / source).exists(), source
            assert source.rstrip("/") in allowed, source
    assert {"pyproject.toml", "README.md", "bridge", "bot"} <= allowed
