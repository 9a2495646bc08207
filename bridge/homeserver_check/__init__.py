"""`santeguard check-homeserver`: is this Synapse configured the way SantéGuard needs?

Reads homeserver.yaml (the file is what decides) and, given SantéGuard's config.yaml
(``-c``), compares it with the network's declared rules and asks the running server one
question: is the enforcement user a server admin? Each finding has an id, a severity
(critical / warning / info), a state, what is wrong and the fix (the homeserver.yaml
block to add). States never claim more than was checked:

- ``ok``: checked, and right;
- ``fix`` ("À CORRIGER" / "TO FIX"): checked and wrong, with what is wrong and the fix;
- ``not_checked`` ("NON VÉRIFIÉ" / "NOT CHECKED"): the check needs something it was not
  given (the registration ``-r``, SantéGuard's config ``-c``) or could not reach (the
  homeserver), so it says so instead of passing.

Exit status of the command (``exit_code``):

- 0: every check ran and passed;
- 1: at least one critical finding to fix;
- 4: findings to fix, none critical (warnings only);
- 3: nothing to fix, but some check was not run;
- 2: homeserver.yaml or config.yaml cannot be read.

"Not checked" is non-zero because a script that gates a deployment on this command must
not pass on a check that did not happen; it has its own code so that the script can tell
"incomplete" from "wrong". Info findings never change the status.

Texts are ``hscheck.*`` keys of ``CATALOG`` (bridge/homeserver_check/text.py).
"""

from __future__ import annotations

from bridge.homeserver_check.checks import check_homeserver, live_target, network_from_config
from bridge.homeserver_check.gate_checks import ANSWERED_CALLBACKS, REQUIRED_CALLBACKS
from bridge.homeserver_check.live import LiveTarget, enforcer_admin
from bridge.homeserver_check.model import (
    EXIT_CRITICAL,
    EXIT_NOT_CHECKED,
    EXIT_OK,
    EXIT_UNREADABLE,
    EXIT_WARNING,
    Finding,
    Network,
    Severity,
    State,
    exit_code,
)
from bridge.homeserver_check.render import as_json, render, render_json
from bridge.homeserver_check.text import CATALOG

__all__ = [
    "ANSWERED_CALLBACKS",
    "CATALOG",
    "EXIT_CRITICAL",
    "EXIT_NOT_CHECKED",
    "EXIT_OK",
    "EXIT_UNREADABLE",
    "EXIT_WARNING",
    "REQUIRED_CALLBACKS",
    "Finding",
    "LiveTarget",
    "Network",
    "Severity",
    "State",
    "as_json",
    "check_homeserver",
    "enforcer_admin",
    "exit_code",
    "live_target",
    "network_from_config",
    "render",
    "render_json",
]
