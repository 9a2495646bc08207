"""Retention capability: every protected room keeps history no longer than declared."""
