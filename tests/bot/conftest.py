"""Fixtures for the bot tests: a strict translator, a fake clock and fake services."""

from __future__ import annotations

import pytest

from bot.i18n import Translator
from tests.bot.harness import FakeClock, FakeServices, Room, make_room


@pytest.fixture
def translator() -> Translator:
    """Strict: a missing key or parameter fails the test instead of showing the key."""
    return Translator(strict=True)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def services() -> FakeServices:
    return FakeServices()


@pytest.fixture
def room(translator: Translator, clock: FakeClock, services: FakeServices) -> Room:
    return make_room(translator=translator, clock=clock, services=services)
