"""Turn the bot's markdown-ish replies into Matrix HTML (escaped, `code` and line breaks)."""

from __future__ import annotations

import html
import re

_CODE = re.compile(r"`([^`\n]+)`")
_BOLD = re.compile(r"\*\*([^*\n]+)\*\*")


def to_html(text: str) -> str:
    """Escape everything, then render `code`, **bold** and newlines; nothing else is trusted."""
    escaped = html.escape(text, quote=False)
    escaped = _CODE.sub(r"<code>\1</code>", escaped)
    escaped = _BOLD.sub(r"<strong>\1</strong>", escaped)
    return escaped.replace("\n", "<br>")
