"""Tests of the in-room admin command framework (`bot/`)."""
