"""The Helm chart: lint, Kubernetes schemas, and what the manifests promise (replicas,
disruption budget, probes, security context, network policy, metrics)."""

from __future__ import annotations

from typing import Any

import helm_python as helm
import kubernetes_validate  # type: ignore[import-untyped]
import pytest

from tests.deploy.chart import (
    CHART,
    KUBE_VERSION,
    MINIMAL,
    Release,
    merged,
    production_values,
    render,
)

CASES = {"default": MINIMAL, "production": production_values()}


@pytest.fixture(params=sorted(CASES))
def release(request: pytest.FixtureRequest) -> Release:
    namespace = "santeguard" if request.param == "production" else "matrix"
    return render(CASES[request.param], namespace=namespace)


@pytest.mark.parametrize("case", sorted(CASES))
def test_lint_passes_strict(case: str) -> None:
    report = helm.lint(CHART, CASES[case], strict=True, kube_version=f"v{KUBE_VERSION}.0")
    assert report["errors"] == []
    # Severity 1 is information ("icon is recommended"); 2 warnings, 3 errors.
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_manifest_is_valid_kubernetes(case: str) -> None:
    release = render(CASES[case], namespace="santeguard" if case == "production" else "matrix")
    kinds = sorted(d["kind"] for d in release.docs)
    for doc in release.docs:
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # a CRD: no upstream schema; its shape is checked below
        # strict: an unknown field (a typo in a template) is an error too.
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        assert doc["metadata"]["namespace"] == release.namespace
    common = ["ConfigMap", "Deployment", "NetworkPolicy", "PodDisruptionBudget", "Service"]
    if case == "default":  # the chart's Secret (generated tokens, key) and the registration
        expected = [*common, "Secret", "Secret", "ServiceAccount"]
    else:  # every secret from the admin's Secrets; registration.create: false
        expected = [*common, "ServiceAccount", "ServiceMonitor"]
    assert kinds == sorted(expected)


def test_a_bad_manifest_is_caught_by_the_validator(release: Release) -> None:
    """The validation above can fail: a misspelt field is refused."""
    broken: dict[str, Any] = merged(release.deployment, {"spec": {"replica": 2}})
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBE_VERSION, strict=True)


def test_service_monitor_shape() -> None:
    default = render(MINIMAL)
    assert default.all("ServiceMonitor") == []
    rel = render(production_values(), namespace="santeguard")
    sm = rel.one("ServiceMonitor")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    service = rel.one("Service")
    assert sm["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert sm["spec"]["namespaceSelector"] == {"matchNames": ["santeguard"]}
    (endpoint,) = sm["spec"]["endpoints"]
    assert endpoint["port"] == "http" and endpoint["path"] == "/metrics"
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}


def test_two_replicas_spread_and_a_disruption_budget() -> None:
    rel = render(MINIMAL)
    spec = rel.deployment["spec"]
    assert spec["replicas"] == 2
    rolling = spec["strategy"]["rollingUpdate"]
    assert spec["strategy"]["type"] == "RollingUpdate"
    assert rolling == {"maxSurge": 1, "maxUnavailable": 0}
    pdb = rel.one("PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    labels = spec["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    # One replica may go voluntarily, never both (a rollout or a drain).
    assert spec["replicas"] - pdb["spec"]["minAvailable"] >= 1
    assert rolling["maxUnavailable"] <= spec["replicas"] - pdb["spec"]["minAvailable"]
    terms = spec["template"]["spec"]["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"
    ]
    assert terms[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert terms[0]["podAffinityTerm"]["labelSelector"]["matchLabels"].items() <= labels.items()
    assert "requiredDuringSchedulingIgnoredDuringExecution" not in str(spec)
    # The Service selects the same pods.
    assert rel.one("Service")["spec"]["selector"].items() <= labels.items()


def test_security_context(release: Release) -> None:
    pod = release.deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert release.one("ServiceAccount")["automountServiceAccountToken"] is False
    sc = release.container["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 10001
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    # Writable places: /tmp and the scratch volume, both emptyDir (no PVC by default).
    volumes = {v["name"]: v for v in pod["volumes"]}
    writable = {
        m["mountPath"]: volumes[m["name"]]
        for m in release.container["volumeMounts"]
        if not m.get("readOnly")
    }
    assert sorted(writable) == ["/tmp", "/var/lib/santeguard"]
    assert all("emptyDir" in v for v in writable.values())
    assert release.all("PersistentVolumeClaim") == []


def test_probes_and_resources(release: Release) -> None:
    c = release.container
    port = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert port == {"http": 29340}
    assert c["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert c["startupProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    startup = c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(c["resources"][kind])
    service = release.one("Service")
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 29340, "targetPort": "http", "protocol": "TCP"}
    ]


def test_pod_name_is_the_replica_id(release: Release) -> None:
    (item,) = [e for e in release.container["env"] if e["name"] == "SANTEGUARD_CLUSTER__REPLICA_ID"]
    assert item["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}


def _peers(rule: dict[str, Any], key: str) -> list[dict[str, Any]]:
    return list(rule[key])


def test_network_policy_lets_in_only_synapse() -> None:
    rel = render(MINIMAL)
    np = rel.one("NetworkPolicy")
    labels = rel.deployment["spec"]["template"]["metadata"]["labels"]
    assert np["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    assert sorted(np["spec"]["policyTypes"]) == ["Egress", "Ingress"]
    (rule,) = np["spec"]["ingress"]
    # Same namespace (no namespaceSelector: an empty one would mean every namespace).
    assert _peers(rule, "from") == [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "matrix-synapse"}}}
    ]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    egress = np["spec"]["egress"]
    ports = sorted((p["port"], p["protocol"]) for r in egress for p in r["ports"])
    assert ports == [(53, "TCP"), (53, "UDP"), (5432, "TCP"), (8008, "TCP")]
    postgres = [r for r in egress if r["ports"] == [{"port": 5432, "protocol": "TCP"}]]
    assert postgres[0]["to"] == [{"ipBlock": {"cidr": "10.20.0.0/24"}}]
    assert all(r.get("to") for r in egress), "an egress rule without `to` allows everywhere"


def test_network_policy_production() -> None:
    rel = render(production_values(), namespace="santeguard")
    np = rel.one("NetworkPolicy")
    synapse = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "matrix"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "matrix-synapse"}},
    }
    ingress = np["spec"]["ingress"]
    # Synapse, and the metrics scraper since the ServiceMonitor is on; nobody else.
    assert [r["from"] for r in ingress] == [
        [synapse],
        [
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
            }
        ],
    ]
    by_port = {r["ports"][0]["port"]: r["to"] for r in np["spec"]["egress"]}
    assert by_port[587] == [{"ipBlock": {"cidr": "203.0.113.25/32"}}]
    assert by_port[993] == [{"ipBlock": {"cidr": "203.0.113.143/32"}}]
    assert by_port[443] == [{"ipBlock": {"cidr": "198.51.100.0/24"}}]
    assert by_port[8008] == [synapse]
    assert all(r.get("to") for r in np["spec"]["egress"])


def test_network_policy_can_be_off() -> None:
    rel = render(
        merged(MINIMAL, {"networkPolicy": {"enabled": False, "postgresql": {"cidrs": []}}})
    )
    assert rel.all("NetworkPolicy") == []


def test_image_and_command() -> None:
    rel = render(MINIMAL)
    assert rel.container["image"] == "santeguard:0.1.0"
    assert rel.container["command"] == ["santeguard"]
    assert rel.container["args"] == ["run", "-c", "/etc/santeguard/config.yaml"]
    pinned = render(merged(MINIMAL, {"image": {"digest": "sha256:" + "a" * 64}}))
    assert pinned.container["image"] == "santeguard@sha256:" + "a" * 64


def test_single_replica_with_a_volume_when_the_store_is_in_files() -> None:
    rel = render(
        merged(
            MINIMAL,
            {
                "replicaCount": 1,
                "config": {"encryption": {"store_in_database": False}},
                "persistence": {"enabled": True},
            },
        )
    )
    spec = rel.deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    pvc = rel.one("PersistentVolumeClaim")
    volumes = {v["name"]: v for v in spec["template"]["spec"]["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    # A budget of one on one replica would block every node drain.
    assert rel.all("PodDisruptionBudget") == []
    for doc in rel.docs:
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


def test_network_policy_extra_rules() -> None:
    nodes = {"from": [{"ipBlock": {"cidr": "192.168.0.0/24"}}], "ports": [{"port": 29340}]}
    rel = render(merged(MINIMAL, {"networkPolicy": {"extraIngress": [nodes]}}))
    ingress = rel.one("NetworkPolicy")["spec"]["ingress"]
    assert ingress[-1] == nodes and len(ingress) == 2


def test_without_the_device_several_replicas_need_no_database_store() -> None:
    values = {"encryption": {"enabled": False, "store_in_database": False}}
    rel = render(merged(MINIMAL, {"config": values}))
    assert rel.deployment["spec"]["replicas"] == 2
