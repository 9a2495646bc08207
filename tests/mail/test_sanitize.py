"""Mail HTML reduced to the Matrix allow-list, and the plain-text fallback."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.mail.sanitize import ALLOWED_TAGS, html_to_text, matrix_html

HOSTILE = [
    # (input, must not appear in the output (lowercased), must appear)
    ("<script>alert('x')</script>Bonjour", ["script", "alert"], ["Bonjour"]),
    ("<SCRIPT SRC=//evil.example/x.js></SCRIPT>ok", ["script", "evil"], ["ok"]),
    ("<style>body{background:url(//t.example/p)}</style>Texte", ["style", "t.example"], ["Texte"]),
    ('<img src="x" onerror="alert(1)">', ["onerror", "alert", "<img"], []),
    ('<img src="https://tracker.example/p.gif" alt="pixel">', ["tracker", "<img"], []),
    ('<img src="data:image/png;base64,iVBORw0KGgo=">', ["data:", "<img"], []),
    ('<img src="mxc://hs.example/abc" onload="x()">', ["onload"], ['src="mxc://hs.example/abc"']),
    ('<a href="javascript:alert(1)">clic</a>', ["javascript", "href"], ["clic"]),
    ('<a href="JaVaScRiPt:alert(1)">clic</a>', ["javascript", "href"], ["clic"]),
    ('<a href="java&#x09;script:alert(1)">clic</a>', ["script", "href"], ["clic"]),
    ('<a href="data:text/html;base64,PHNjcmlwdD4=">d</a>', ["data:", "href"], ["d"]),
    ('<a href="vbscript:x">v</a>', ["vbscript", "href"], ["v"]),
    ('<a href="mxc://hs/abc">m</a>', ["mxc", "href"], ["m"]),
    ('<a href="/relative">r</a>', ["relative", "href"], ["r"]),
    ('<a href="https://ok.example/" onclick="x()">o</a>', ["onclick"], ['href="https://ok.example/"']),
    ('<a href="mailto:dr@medecin.mssante.fr">m</a>', [], ['href="mailto:dr@medecin.mssante.fr"']),
    ('<p style="color:red" class="x" id="y">p</p>', ["style", "class", "id="], ["<p>p</p>"]),
    ("<iframe src=https://evil.example></iframe>x", ["iframe", "evil"], ["x"]),
    ("<svg><script>alert(1)</script></svg>x", ["svg", "alert"], ["x"]),
    ("<object data=x.swf></object><embed src=x.swf>e", ["object", "embed", "swf"], ["e"]),
    ("<form action=//x><input name=p></form>f", ["form", "input"], ["f"]),
    ("<!-- secret comment -->c", ["secret"], ["c"]),
    ("<meta http-equiv=refresh content='0;url=//x'>m", ["meta", "refresh"], ["m"]),
    ("<base href=//evil.example/>b", ["base", "evil"], ["b"]),
    ("<title>Dossier X</title>t", ["dossier"], ["t"]),
    ("<math><mi>x</mi></math>y", ["math"], ["y"]),
    ('<font color="red" data-mx-color="expression(x)" face="x">f</font>', ["expression", "face"],
     ['color="red"']),
    ('<span data-mx-spoiler="raison" onclick="x">s</span>', ["onclick"], ["data-mx-spoiler"]),
    ('<code class="language-python evil">c</code>', ["evil"], ['class="language-python"']),
    ('<code class="hljs">c</code>', ["class"], ["<code>c</code>"]),
    ('<ol start="3" type="a"><li>x</li></ol>', ["type="], ['start="3"']),
    ('<ol start="3; x">x</ol>', ["start"], ["<ol>"]),
    ('<a href="https://x.example" target="_top">t</a>', ["_top"], ["https://x.example"]),
    ('<img src="mxc://hs/a" width="10" height="100%">', ["100%"], ['width="10"']),
    ("<details><summary>S</summary>D</details>", [], ["<details>", "<summary>S</summary>"]),
    ("<table><tr><td onclick=x>1</td></tr></table>", ["onclick"], ["<td>1</td>"]),
    ('<div><blockquote>q</blockquote><pre>  pre</pre></div>', [], ["<blockquote>q</blockquote>"]),
    ("<h1>T</h1><hr><del>d</del><strike>s</strike><sup>1</sup>", [], ["<h1>T</h1>", "<hr>"]),
]  # fmt: skip


@pytest.mark.parametrize(("html", "absent", "present"), HOSTILE)
def test_matrix_html_strips_hostile_content(
    html: str, absent: list[str], present: list[str]
) -> None:
    out = matrix_html(html)
    for needle in absent:
        assert needle not in out.lower(), (needle, out)
    for needle in present:
        assert needle in out, (needle, out)


def test_matrix_html_keeps_only_allowed_tags() -> None:
    html = "".join(f"<{t}>x</{t}>" for t in sorted(ALLOWED_TAGS | {"video", "audio", "marquee"}))
    out = matrix_html(html)
    tags = set(re.findall(r"<([a-z0-9]+)", out))
    assert tags <= ALLOWED_TAGS
    assert {"video", "audio", "marquee"}.isdisjoint(tags)


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        ("<p>Bonjour <b>Docteur</b></p>", "Bonjour Docteur"),
        ("<p>un</p><p>deux</p>", "un\n\ndeux"),
        ("a<br>b<br/>c", "a\nb\nc"),
        ("<ul><li>un</li><li>deux</li></ul>", "- un\n- deux"),
        ('<a href="https://x.example/r">résultats</a>', "résultats <https://x.example/r>"),
        ('<a href="https://x.example/r">https://x.example/r</a>', "https://x.example/r"),
        ('<a href="mailto:dr@x.fr">dr@x.fr</a>', "dr@x.fr"),
        ('<a href="javascript:x()">lien</a>', "lien"),
        ("<style>p{}</style><script>x()</script><title>t</title>corps", "corps"),
        ("<head><title>t</title></head><body>corps</body>", "corps"),
        ("&eacute;t&eacute; &amp; &lt;hiver&gt;", "été & <hiver>"),
        ("<pre>  code\n    indent</pre>", "code\n    indent"),
        ('<img src="x" alt="logo"> texte', "[logo] texte"),
        ("<table><tr><td>a</td><td>b</td></tr></table>", "a b"),
        ("", ""),
        ("texte <b>non fermé", "texte non fermé"),
    ],
)
def test_html_to_text(html: str, expected: str) -> None:
    assert html_to_text(html) == expected


@settings(max_examples=200, deadline=None)
@given(
    st.text(alphabet=st.sampled_from(list("<>/=\"' abcdefghijklmnopqrstuvwxyz:&;#")), max_size=200)
)
def test_sanitizers_never_raise_nor_let_events_through(html: str) -> None:
    """200 examples of tag soup: no exception, no event handler or script survives."""
    out = matrix_html(html)
    assert "<script" not in out.lower()
    assert not re.search(r"<[^>]*\son[a-z]+\s*=", out.lower())
    assert isinstance(html_to_text(html), str)
