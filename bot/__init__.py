"""In-room admin bot: `!sg` commands, parsing, permissions and replies (French by default)."""
