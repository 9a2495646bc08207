"""What every capability shares: error kinds, decisions, ports, reference data."""
