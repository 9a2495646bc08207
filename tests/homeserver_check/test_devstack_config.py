"""The homeserver.yaml the dev stack generates passes what SantéGuard relies on.

Not required of it: encryption by default (tests create clear admin rooms), the live
check (not run here), and — reported to the dev stack's owners — a retention
``default_policy`` and a password policy.
"""

from __future__ import annotations

from pathlib import Path

from bridge.devtools.stack import DevStack
from bridge.homeserver_check import State, check_homeserver, network_from_config

MUST_PASS = {
    "registration",
    "antispam",
    "callbacks",
    "unanswered",
    "fail_closed",
    "room_rules",
    "msc",
    "retention",
    "purge_jobs",
    "purge_interval",
    "retention_bounds",
    "open_registration",
    "federation",
    "url_previews",
    "password_with_sso",
}


def test_the_dev_stacks_homeserver_yaml(tmp_path: Path) -> None:
    stack = DevStack(tmp_path / "s", db_uri=f"sqlite:///{tmp_path / 'x.db'}")
    network = network_from_config(stack.config())
    found = {
        f.id: f
        for f in check_homeserver(
            stack.synapse.build_config(), stack.registration_path, network=network
        )
    }
    failing = {i: f.problem for i, f in found.items() if i in MUST_PASS and not f.ok}
    assert failing == {}
    assert found["encryption"].state is State.FIX  # off on purpose in the dev stack
    assert found["enforcer_admin"].state is State.NOT_CHECKED
