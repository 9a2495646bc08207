"""Rendering the Helm chart offline (helm-python-sdk: Helm's own library, no binary, no
cluster) and playing the part of the kubelet for one pod: its environment variables and
its mounted files, so SantéGuard's own configuration loader can read what a pod gets."""

from __future__ import annotations

import base64
import copy
import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "santeguard"
PRODUCTION_VALUES = Path(__file__).resolve().parent / "values-production.yaml"
KUBE_VERSION = "1.30"

#: The least a default install needs (everything else is the chart's values.yaml).
MINIMAL: dict[str, Any] = {
    "config": {
        "homeserver": {
            "address": "http://matrix-synapse.matrix.svc.cluster.local:8008",
            "domain": "sante.example",
        }
    },
    "database": {"host": "postgres.db.svc.cluster.local", "password": "db-password-for-tests"},
    "networkPolicy": {"postgresql": {"cidrs": ["10.20.0.0/24"]}},
}


def merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def production_values() -> dict[str, Any]:
    data = yaml.safe_load(PRODUCTION_VALUES.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@dataclass(frozen=True)
class Release:
    """One offline render: the manifests (parsed) and the NOTES text."""

    name: str
    namespace: str
    docs: list[dict[str, Any]]
    notes: str

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [d for d in self.all(kind) if name is None or d["metadata"]["name"] == name]
        assert len(found) == 1, f"{len(found)} {kind} named {name}"
        return found[0]

    @property
    def deployment(self) -> dict[str, Any]:
        return self.one("Deployment")

    @property
    def container(self) -> dict[str, Any]:
        containers = self.deployment["spec"]["template"]["spec"]["containers"]
        assert len(containers) == 1
        return dict(containers[0])

    def secret_data(self, name: str) -> dict[str, str]:
        secret = self.one("Secret", name)
        out = {k: base64.b64decode(v).decode("utf-8") for k, v in secret.get("data", {}).items()}
        out.update(secret.get("stringData", {}))
        return out

    def config_yaml(self) -> str:
        return str(self.one("ConfigMap")["data"]["config.yaml"])


def render(values: dict[str, Any], *, name: str = "sg", namespace: str = "matrix") -> Release:
    """Render the chart as `helm template` would (values checked against the schema)."""
    key = json.dumps(values, sort_keys=True)
    return _render(key, name, namespace)


@functools.lru_cache(maxsize=32)
def _render(values_json: str, name: str, namespace: str) -> Release:
    with helm.Chart.load(CHART) as chart:
        out = chart.render(json.loads(values_json), name=name, namespace=namespace)
    docs: list[dict[str, Any]] = []
    notes = ""
    for path, text in sorted(out.items()):
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return Release(name=name, namespace=namespace, docs=docs, notes=notes)


def render_error(values: dict[str, Any]) -> str:
    """The error message of a render that must fail (AssertionError if it renders)."""
    try:
        with helm.Chart.load(CHART) as chart:
            chart.render(values, name="sg", namespace="matrix")
    except helm.HelmError as e:
        return str(e)
    raise AssertionError("the chart rendered values it should have refused")


# -- the kubelet's part -------------------------------------------------------------------

_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def _expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: defined earlier in the list, else left as is."""

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return _VAR_REF.sub(one, value)


@dataclass(frozen=True)
class Pod:
    """What one pod of the Deployment would see."""

    root: Path
    env: dict[str, str]
    config_path: Path
    argv: list[str]


def secrets_of(release: Release, existing: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """The Secrets of the namespace: the admin's (``existing``) and the chart's."""
    out = {name: dict(data) for name, data in existing.items()}
    for secret in release.all("Secret"):
        if secret["metadata"]["namespace"] == release.namespace:
            out[secret["metadata"]["name"]] = release.secret_data(secret["metadata"]["name"])
    return out


def pod_env(release: Release, secrets: dict[str, dict[str, str]], pod_name: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in release.container["env"]:
        name = item["name"]
        if "value" in item:
            env[name] = _expand(str(item["value"]), env)
            continue
        source = item["valueFrom"]
        if "fieldRef" in source:
            assert source["fieldRef"]["fieldPath"] == "metadata.name"
            env[name] = pod_name
            continue
        ref = source["secretKeyRef"]
        data = secrets.get(ref["name"])
        if data is None or ref["key"] not in data:
            assert ref.get("optional"), f"{name}: Secret {ref['name']} lacks {ref['key']}"
            continue
        env[name] = data[ref["key"]]
    return env


def start_pod(
    release: Release,
    root: Path,
    *,
    existing: dict[str, dict[str, str]] | None = None,
    pod_name: str = "sg-santeguard-5d9c7b8f6-x2x7q",
) -> Pod:
    """Lay the pod's volumes out under ``root`` (each mount path below it) and resolve its
    environment. Absolute paths in config.yaml and the environment that point into a
    mount are moved under ``root`` too, as if ``root`` were the container's ``/``."""
    secrets = secrets_of(release, existing or {})
    spec = release.deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    configmaps = {c["metadata"]["name"]: c["data"] for c in release.all("ConfigMap")}
    mounts = release.container["volumeMounts"]
    for mount in mounts:
        target = root / mount["mountPath"].lstrip("/")
        volume = volumes[mount["name"]]
        if "configMap" in volume:
            files = dict(configmaps[volume["configMap"]["name"]])
        elif "secret" in volume:
            files = dict(secrets[volume["secret"]["secretName"]])
        else:
            target.mkdir(parents=True, exist_ok=True)
            continue
        items = (volume.get("configMap") or volume.get("secret") or {}).get("items")
        if items:
            files = {i["path"]: files[i["key"]] for i in items}
        if "subPath" in mount:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(files[mount["subPath"]], encoding="utf-8")
            continue
        target.mkdir(parents=True, exist_ok=True)
        for rel, text in files.items():
            (target / rel).write_text(text, encoding="utf-8")
    paths = sorted((m["mountPath"] for m in mounts), key=len, reverse=True)
    moved = re.compile("|".join(re.escape(p) for p in paths))

    def move(text: str) -> str:
        return moved.sub(lambda m: str(root) + m.group(0), text)

    config_path = root / "etc/santeguard/config.yaml"
    config_path.write_text(move(config_path.read_text(encoding="utf-8")), encoding="utf-8")
    env = {k: move(v) for k, v in pod_env(release, secrets, pod_name).items()}
    argv = [move(a) for a in [*release.container["command"], *release.container["args"]]]
    return Pod(root=root, env=env, config_path=config_path, argv=argv)
