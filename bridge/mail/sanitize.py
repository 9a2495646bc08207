"""Mail HTML made safe for Matrix, and a plain-text fallback.

A mail's HTML comes from outside the trust boundary: it is reduced to what the Matrix spec
allows in ``org.matrix.custom.html`` (m.room.message, "HTML" section) so no client is
exposed to scripts, tracking images or unexpected link schemes.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

import nh3

__all__ = ["ALLOWED_ATTRIBUTES", "ALLOWED_TAGS", "html_to_text", "matrix_html"]

ALLOWED_TAGS: frozenset[str] = frozenset(
    {
        "font", "del", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "p", "a", "ul",
        "ol", "sup", "sub", "li", "b", "i", "u", "strong", "em", "strike", "s", "code",
        "hr", "br", "div", "table", "thead", "tbody", "tr", "th", "td", "caption", "pre",
        "span", "img", "details", "summary",
    }
)  # fmt: skip
ALLOWED_ATTRIBUTES: dict[str, frozenset[str]] = {
    "font": frozenset({"data-mx-bg-color", "data-mx-color", "color"}),
    "span": frozenset({"data-mx-bg-color", "data-mx-color", "data-mx-spoiler"}),
    "a": frozenset({"href", "target"}),
    "img": frozenset({"width", "height", "alt", "title", "src"}),
    "ol": frozenset({"start"}),
    "code": frozenset({"class"}),
}
# Removed with everything inside them (their text is code or metadata, not the message).
_DROP_CONTENT = frozenset(
    {"script", "style", "title", "head", "noscript", "template", "iframe", "object",
     "embed", "svg", "math", "textarea", "select", "xmp", "noembed", "noframes"}
)  # fmt: skip
_LINK_SCHEMES = ("http:", "https:", "mailto:")
_COLOR = re.compile(r"#[0-9a-fA-F]{6}")
_NAMED_COLOR = re.compile(r"[a-zA-Z]{3,20}")
_LANGUAGE = re.compile(r"language-[A-Za-z0-9_+#.-]{1,40}")
_DIGITS = re.compile(r"[0-9]{1,6}")
# nh3 serialises attributes double-quoted with '"' escaped, so this matches a whole tag.
_IMG_TAG = re.compile(r'<img\b(?:[^>"]|"[^"]*")*>')


def _attribute_filter(tag: str, attr: str, value: str) -> str | None:
    """Per-attribute rules nh3's allow-lists cannot express (schemes per tag, value shapes)."""
    if attr == "href":
        return value if value.strip().lower().startswith(_LINK_SCHEMES) else None
    if attr == "src":
        return value if value.strip().lower().startswith("mxc://") else None
    if attr in ("color", "data-mx-color", "data-mx-bg-color"):
        if _COLOR.fullmatch(value) or (attr == "color" and _NAMED_COLOR.fullmatch(value)):
            return value
        return None
    if attr in ("width", "height", "start"):
        return value if _DIGITS.fullmatch(value.strip()) else None
    if attr == "class":
        kept = [name for name in value.split() if _LANGUAGE.fullmatch(name)]
        return kept[0] if kept else None
    if attr == "target":
        return "_blank" if value.strip().lower() == "_blank" else None
    return value


def _drop_non_mxc_images(html: str) -> str:
    """An ``img`` that lost its ``src`` (not mxc:) is removed rather than kept empty."""
    return _IMG_TAG.sub(lambda m: m.group(0) if ' src="' in m.group(0) else "", html)


def matrix_html(html: str) -> str:
    """``html`` reduced to the Matrix allow-list: safe to send as ``formatted_body``."""
    cleaned = nh3.clean(
        html,
        tags=set(ALLOWED_TAGS),
        clean_content_tags=set(_DROP_CONTENT),
        attributes={tag: set(attrs) for tag, attrs in ALLOWED_ATTRIBUTES.items()},
        attribute_filter=_attribute_filter,
        url_schemes={"http", "https", "mailto", "mxc"},
        link_rel=None,
        strip_comments=True,
    )
    return _drop_non_mxc_images(cleaned).strip()


_BLOCKS = frozenset(
    {"p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "table", "tr",
     "ul", "ol", "hr", "details", "summary", "caption", "section", "article", "header",
     "footer", "address", "dl", "dt", "dd", "figure", "main", "nav", "form"}
)  # fmt: skip
_PARAGRAPHS = frozenset({"p", "blockquote", "table", "pre"})
# Skipped with their content when extracting text; void or often unclosed elements (head,
# embed) are left out, or everything after them would be lost.
_SKIP_TEXT = _DROP_CONTENT - {"head", "embed"}


class _TextExtractor(HTMLParser):
    """Collects readable text: blocks become lines, list items bullets, links keep targets."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self._skip = 0
        self._pre = 0
        self._links: list[tuple[str | None, int]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TEXT:
            self._skip += 1
        elif tag == "br":
            self.out.append("\n")
        elif tag == "li":
            self.out.append("\n- ")
        elif tag in ("td", "th"):
            self.out.append(" ")
        elif tag == "img":
            alt = dict(attrs).get("alt")
            if alt:
                self.out.append(f"[{alt}]")
        elif tag == "a":
            self._links.append((dict(attrs).get("href"), len(self.out)))
        elif tag in _BLOCKS:
            if tag == "pre":
                self._pre += 1
            self.out.append("\n\n" if tag in _PARAGRAPHS else "\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TEXT:
            self._skip = max(0, self._skip - 1)
        elif tag == "a" and self._links:
            href, start = self._links.pop()
            text = "".join(self.out[start:]).strip()
            if href and href.lower().startswith(_LINK_SCHEMES):
                target = href[7:] if href.lower().startswith("mailto:") else href
                if target not in (text, ""):
                    self.out.append(f" <{target}>")
        elif tag in _BLOCKS:
            if tag == "pre" and self._pre:
                self._pre -= 1
            self.out.append("\n\n" if tag in _PARAGRAPHS else "\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.out.append(data if self._pre else re.sub(r"\s+", " ", data))


def html_to_text(html: str) -> str:
    """Readable plain text for ``body`` when a mail has HTML only (never rendered as HTML)."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    # Lines indented by two spaces or more come from <pre>: keep their indentation.
    lines = [line.rstrip() for line in "".join(parser.out).splitlines()]
    text = "\n".join(line if line.startswith("  ") else line.lstrip() for line in lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()
