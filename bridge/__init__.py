"""SantéGuard: a Matrix application service enforcing healthcare-messaging compliance."""

__version__ = "0.1.0"
