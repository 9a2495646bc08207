"""Writes helm/santeguard/values.schema.json (JSON Schema draft-07) for the chart's values.

The ``config:`` part follows SantéGuard's configuration model (``bridge.config.Config``):
every section and key of the model, with its type and bounds, less the keys the chart sets
itself (``MANAGED``); unknown keys are refused everywhere, so a typo fails the install.
tests/deploy checks that the committed file is this script's output. After a change to
the model or the chart's values:

    .venv/bin/python helm/values_schema.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "helm" / "santeguard" / "values.schema.json"

#: Keys of SantéGuard's config the chart sets itself (ConfigMap, environment, mounts).
MANAGED: dict[str, set[str]] = {
    "appservice": {"hostname", "port", "as_token", "hs_token", "registration"},
    "antispam": {"token"},
    "database": {"uri", "sqlite_synchronous"},  # the URI from database.*; SQLite refused
    "directory": {"fhir_api_key", "homeserver_admin_token"},
    "encryption": {"store_path"},
    "mail": {"smtp_password", "imap_password", "ca_file", "client_cert", "client_key"},
    "audit": {"signing_key", "key_file", "checkpoint_file"},
    "cluster": {"replica_id"},
}
_KEEP = {"type", "anyOf", "enum", "minimum", "maximum", "exclusiveMinimum",
         "exclusiveMaximum", "items", "const", "pattern"}  # fmt: skip
#: The durations the chart converts for Synapse (templates/_helpers.tpl, durationMs).
DURATION = "^[1-9][0-9]* ?(h|d|j|w|sem|mo|mois|y|a)$"
_DURATION_KEYS = {"default_max_lifetime", "min_lifetime", "max_lifetime", "purge_interval",
                  "inactive_after", "inactive_notice"}  # fmt: skip
_URL_OR_EMPTY = {"type": "string", "pattern": "^(https?://.*)?$"}


def _clean(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _clean(v) for k, v in node.items() if k in _KEEP}
    if isinstance(node, list):
        return [_clean(v) for v in node]
    return node


def _strict(props: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "properties": props, **extra}


def config_sections() -> dict[str, Any]:
    from bridge.config import Config

    full = Config.model_json_schema()
    sections: dict[str, Any] = {}
    for name, ref in full["properties"].items():
        target = ref.get("$ref") or ref["allOf"][0]["$ref"]
        model = full["$defs"][target.rsplit("/", 1)[1]]
        props = {}
        for key, sub in model["properties"].items():
            if key in MANAGED.get(name, set()):
                continue
            if name == "retention" and key in _DURATION_KEYS:
                props[key] = {"type": "string", "pattern": DURATION}
            else:
                props[key] = _clean(sub)
        sections[name] = _strict(props)
    sections["homeserver"]["required"] = ["address", "domain"]
    sections["homeserver"]["properties"]["address"] = _URL_OR_EMPTY
    sections["appservice"]["properties"]["address"] = _URL_OR_EMPTY
    return sections


def schema() -> dict[str, Any]:
    s: dict[str, Any] = {"type": "string"}
    b = {"type": "boolean"}
    obj = {"type": "object"}
    port = {"type": "integer", "minimum": 1, "maximum": 65535}
    cidrs = {"type": "array", "items": {"type": "string", "pattern": "^[0-9a-fA-F:.]+/[0-9]{1,3}$"}}
    selector = _strict({"namespaceSelector": obj, "podSelector": obj})
    count = {"type": "integer", "minimum": 1}
    probe = _strict({"periodSeconds": count, "failureThreshold": count, "timeoutSeconds": count})

    def secrets(*keys: str) -> dict[str, Any]:
        return _strict({**{k: s for k in keys}, "existingSecret": s})

    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "SantéGuard chart values",
        "type": "object",
        "additionalProperties": False,
        "required": ["config", "database", "secrets"],
        "properties": {
            "replicaCount": count,
            "image": _strict(
                {
                    "repository": {"type": "string", "minLength": 1},
                    "tag": s,
                    "digest": {"type": "string", "pattern": "^(sha256:[0-9a-f]{64})?$"},
                    "pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
                },
                required=["repository"],
            ),
            "notesLanguage": {"enum": ["fr", "en"]},
            "imagePullSecrets": {"type": "array", "items": obj},
            "nameOverride": s,
            "fullnameOverride": s,
            "clusterDomain": {"type": "string", "minLength": 1},
            "config": _strict(config_sections(), required=["homeserver", "appservice"]),
            "database": _strict(
                {
                    "host": s,
                    "port": port,
                    "name": {"type": "string", "minLength": 1},
                    "user": {"type": "string", "minLength": 1},
                    "options": s,
                    "uri": s,
                    "password": s,
                    "existingSecret": s,
                    "existingSecretPasswordKey": {"type": "string", "minLength": 1},
                    "existingSecretUriKey": s,
                }
            ),
            "secrets": _strict(
                {
                    "tokens": secrets("asToken", "hsToken", "antispamToken"),
                    "audit": secrets("signingKey"),
                    "directory": secrets("fhirApiKey", "homeserverAdminToken"),
                    "mail": secrets("imapPassword", "smtpPassword"),
                    "mailTls": secrets("ca", "clientCert", "clientKey"),
                }
            ),
            "registration": _strict(
                {
                    "create": b,
                    "namespace": s,
                    "senderLocalpart": {"type": "string", "pattern": "^([a-z0-9._=/+-]+)?$"},
                }
            ),
            "persistence": _strict(
                {
                    "enabled": b,
                    "existingClaim": s,
                    "storageClass": s,
                    "size": s,
                    "accessModes": {"type": "array", "items": s},
                }
            ),
            "service": _strict(
                {"type": {"enum": ["ClusterIP", "NodePort", "LoadBalancer"]}, "annotations": obj}
            ),
            "serviceAccount": _strict({"create": b, "name": s, "annotations": obj}),
            "podAnnotations": obj,
            "podLabels": obj,
            "resources": obj,
            "podDisruptionBudget": _strict(
                {"enabled": b, "minAvailable": {"type": ["integer", "string"]}}
            ),
            "probes": _strict({"startup": probe, "liveness": probe, "readiness": probe}),
            "terminationGracePeriodSeconds": {"type": "integer", "minimum": 0},
            "nodeSelector": obj,
            "tolerations": {"type": "array"},
            "affinity": obj,
            "extraEnv": {"type": "array", "items": {"type": "object", "required": ["name"]}},
            "networkPolicy": _strict(
                {
                    "enabled": b,
                    "synapse": _strict(
                        {"namespaceSelector": obj, "podSelector": obj, "port": port}
                    ),
                    "metrics": selector,
                    "dns": selector,
                    "postgresql": _strict(
                        {"cidrs": cidrs, "peers": {"type": "array", "items": obj}}
                    ),
                    "smtp": _strict({"cidrs": cidrs}),
                    "imap": _strict({"cidrs": cidrs}),
                    "directory": _strict({"cidrs": cidrs, "port": port}),
                    "extraEgress": {"type": "array", "items": obj},
                    "extraIngress": {"type": "array", "items": obj},
                }
            ),
            "serviceMonitor": _strict(
                {"enabled": b, "interval": s, "scrapeTimeout": s, "labels": obj}
            ),
        },
    }


def render() -> str:
    return json.dumps(schema(), indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    sys.path.insert(0, str(ROOT))
    OUT.write_text(render(), encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
