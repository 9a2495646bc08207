"""What the report needs of the text catalog (``bot.i18n.Translator`` fulfils it)."""

from __future__ import annotations

from typing import Protocol


class TextPort(Protocol):
    def t(self, key: str, lang: str, /, **params: object) -> str: ...
