"""The bot's own end-to-end encrypted device (matrix-nio with vodozemac) and its
cross-signing identity. See docs/e2ee.md for the design.

``device`` (the device itself) imports matrix-nio; ``status`` is plain data."""
