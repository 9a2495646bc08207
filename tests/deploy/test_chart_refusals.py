"""What the chart refuses to deploy: typos and wrong types (values.schema.json), SQLite,
several replicas on a file-based device store, and half-configured secrets."""

from __future__ import annotations

from typing import Any

import pytest

from tests.deploy.chart import MINIMAL, merged, production_values, render_error


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"replicas": 2}, "replicas"),  # replicaCount misspelt
        ({"config": {"homeserver": {"adress": "http://x:8008"}}}, "adress"),
        ({"config": {"gate": {"admin_rooms": "!a:b"}}}, "admin_rooms"),
        ({"config": {"appservice": {"as_token": "in-the-configmap"}}}, "as_token"),
        ({"config": {"database": {"uri": "postgres://u:p@h/db"}}}, "uri"),
        ({"secrets": {"tokens": {"asTokn": "x"}}}, "asTokn"),
        ({"networkPolicy": {"postgres": {"cidrs": []}}}, "postgres"),
        ({"replicaCount": "two"}, "replicaCount"),
        ({"database": {"port": "5432"}}, "port"),
        ({"config": {"bot": {"language": "de"}}}, "language"),
        ({"config": {"retention": {"min_lifetime": "1 month"}}}, "min_lifetime"),
        ({"config": {"dispatch": {"max_concurrent_rooms": 0}}}, "max_concurrent_rooms"),
        ({"networkPolicy": {"postgresql": {"cidrs": ["postgres.db"]}}}, "cidrs"),
        ({"image": {"pullPolicy": "Sometimes"}}, "pullPolicy"),
    ],
)
def test_schema_refuses_typos_and_bad_types(extra: dict[str, Any], named: str) -> None:
    message = render_error(merged(MINIMAL, extra))
    assert "schema" in message
    assert named in message


@pytest.mark.parametrize(
    "uri", ["sqlite:santeguard.db", "sqlite:///var/lib/santeguard/santeguard.db", "SQLITE:x.db"]
)
def test_sqlite_is_refused(uri: str) -> None:
    message = render_error(merged(MINIMAL, {"database": {"uri": uri}}))
    assert "SQLite is for one process only" in message


def test_a_database_is_required() -> None:
    message = render_error(merged(MINIMAL, {"database": {"host": ""}}))
    assert "database.host" in message
    message = render_error(merged(MINIMAL, {"database": {"password": ""}}))
    assert "database.password" in message
    message = render_error(merged(MINIMAL, {"database": {"uri": "mysql://h/db"}}))
    assert "postgres://" in message


def test_the_homeserver_is_required() -> None:
    message = render_error({k: v for k, v in MINIMAL.items() if k != "config"})
    assert "config.homeserver.address is required" in message


def test_several_replicas_need_the_store_in_the_database() -> None:
    message = render_error(
        merged(MINIMAL, {"config": {"encryption": {"store_in_database": False}}})
    )
    assert "replicaCount > 1 needs config.encryption.store_in_database: true" in message


def test_a_file_store_needs_a_volume() -> None:
    values = merged(
        MINIMAL, {"replicaCount": 1, "config": {"encryption": {"store_in_database": False}}}
    )
    assert "set persistence.enabled" in render_error(values)


def test_a_volume_means_one_replica() -> None:
    message = render_error(merged(MINIMAL, {"persistence": {"enabled": True}}))
    assert "persistence.enabled needs replicaCount: 1" in message


def test_the_network_policy_needs_postgresql() -> None:
    message = render_error(merged(MINIMAL, {"networkPolicy": {"postgresql": {"cidrs": []}}}))
    assert "networkPolicy.postgresql" in message


def test_mail_needs_its_secrets_and_addresses() -> None:
    values = merged(MINIMAL, {"config": {"mail": {"enabled": True}}})
    assert "secrets.mailTls" in render_error(values)
    values = merged(
        values, {"secrets": {"mailTls": {"ca": "x", "clientCert": "y", "clientKey": "z"}}}
    )
    assert "secrets.mail.imapPassword" in render_error(values)
    values = merged(values, {"secrets": {"mail": {"imapPassword": "p"}}})
    assert "networkPolicy.smtp.cidrs" in render_error(values)


def test_fhir_needs_its_key() -> None:
    values = merged(MINIMAL, {"config": {"directory": {"source": "fhir"}}})
    assert "secrets.directory.fhirApiKey" in render_error(values)


def test_registration_from_an_existing_secret_needs_the_cluster() -> None:
    """With the tokens in the admin's Secret, the registration is written from that Secret,
    read with `lookup`: offline (helm template) it cannot be, and the chart says so."""
    values = merged(production_values(), {"registration": {"create": True}})
    message = render_error(values)
    assert "Secret santeguard-tokens (secrets.tokens.existingSecret) cannot be read" in message
    assert "registration.create=false" in message


def test_durations_the_chart_cannot_convert_are_refused() -> None:
    # The schema takes SantéGuard's units; the Synapse block in the notes needs them exact.
    message = render_error(merged(MINIMAL, {"config": {"retention": {"purge_interval": "90"}}}))
    assert "purge_interval" in message
