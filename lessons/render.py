"""Lesson Markdown to HTML that is safe whatever a trainer writes, and to plain text.

Pure: no Flask, no database. Markdown is parsed with raw HTML disabled, the token stream is
reshaped (headings shifted, unsafe links reduced to their text, key sections wrapped), and the
rendered HTML then passes through an allowlist sanitiser, so the shaping is never the only guard.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

import nh3
from markdown_it import MarkdownIt
from markdown_it.token import Token

MAX_HEADING_LEVEL = 4
SAFE_SCHEMES = frozenset({"http", "https", "mailto"})
EXTERNAL_SCHEMES = frozenset({"http", "https"})
EXTERNAL_LINK_REL = "noopener noreferrer"
EXTERNAL_LINK_TARGET = "_blank"
MAX_ANCHOR_CHARS = 80
TAKEAWAYS_TITLE = "Key takeaways"
SOURCES_TITLE = "Sources"

# Headings at the top rank (h2) that open a section with its own landmark element.
_SECTIONS: dict[str, tuple[str, str]] = {
    TAKEAWAYS_TITLE.casefold(): ("aside", "takeaways"),
    SOURCES_TITLE.casefold(): ("section", "sources"),
}
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
_NOT_ANCHOR = re.compile(r"[^\w]+")
# Text may mention these (a lesson about phishing might); an entity keeps what the reader sees
# identical while nothing that scans or re-embeds our HTML can find a live scheme or handler in it.
_SCHEME_IN_TEXT = re.compile(r"(javascript|vbscript|livescript|data)(:)", re.IGNORECASE)
_HANDLER_IN_TEXT = re.compile(r"(\bon\w+)(=)", re.IGNORECASE)

_INLINE_TAGS = frozenset({"strong", "em", "del", "code", "a", "br"})
_BLOCK_TAGS = _INLINE_TAGS | frozenset(
    {
        "p", "h2", "h3", "h4", "ul", "ol", "li", "pre", "blockquote", "hr", "aside", "section",
        "table", "thead", "tbody", "tr", "th", "td",
    }
)
_LINK_ATTRIBUTES = {"a": {"href", "title"}}
_LINK_ATTRIBUTE_VALUES = {"a": {"rel": {EXTERNAL_LINK_REL}, "target": {EXTERNAL_LINK_TARGET}}}


@dataclass(frozen=True)
class Heading:
    """A top-level heading as rendered: level 2–4, text, anchor id and 1-based line in the Markdown."""

    level: int
    text: str
    anchor: str
    line: int


class _LessonMarkdown(MarkdownIt):
    def validateLink(self, url: str) -> bool:
        # Accept every link at parse time so an unsafe one can later be reduced to its text,
        # instead of staying literal Markdown that still shows the URL.
        return True


def _parser() -> MarkdownIt:
    return _LessonMarkdown("commonmark", {"html": False}).enable(["table", "strikethrough"])


def _is_safe_href(href: str) -> bool:
    """Whether a link target may appear in lesson HTML: a fragment, or an http, https or mailto URL."""
    if href.startswith("#"):
        return True
    scheme = _SCHEME.match(href)
    return scheme is not None and scheme.group(1).lower() in SAFE_SCHEMES


def _vet_attribute(tag: str, attribute: str, value: str) -> str | None:
    # The sanitiser re-checks what the token pass decided, so a slip there can't let a link through.
    # `ol start` is kept beyond the brief's list: "3." after a paragraph must still read as step 3.
    if attribute == "href":
        return value if _is_safe_href(value) else None
    if attribute == "start":
        return value if value.isdigit() and len(value) <= 9 else None
    return value


# Built once: they are immutable, hold no I/O, and a cleaner compiles its allowlist when made.
_MD = _parser()
_INLINE_CLEANER = nh3.Cleaner(
    tags=set(_INLINE_TAGS),
    attributes=_LINK_ATTRIBUTES,
    tag_attribute_values=_LINK_ATTRIBUTE_VALUES,
    attribute_filter=_vet_attribute,
    link_rel=None,
    url_schemes=set(SAFE_SCHEMES),
)
_BLOCK_CLEANER = nh3.Cleaner(
    tags=set(_BLOCK_TAGS),
    attributes={
        **_LINK_ATTRIBUTES,
        "h2": {"id"}, "h3": {"id"}, "h4": {"id"},
        "aside": {"aria-labelledby"}, "section": {"aria-labelledby"},
        "ol": {"start"},
    },
    tag_attribute_values={
        **_LINK_ATTRIBUTE_VALUES,
        "th": {"scope": {"col", "row"}},
        "aside": {"class": {"takeaways"}},
        "section": {"class": {"sources"}},
    },
    attribute_filter=_vet_attribute,
    link_rel=None,
    url_schemes=set(SAFE_SCHEMES),
)


def render_markdown(text: str) -> str:
    """Render a lesson body (or any block of trainer Markdown) to sanitised HTML."""
    html = _MD.renderer.render(_block_tokens(text), _MD.options, {})
    return _defang(_BLOCK_CLEANER.clean(html))


def render_inline(text: str) -> str:
    """Render a one-line text such as a choice label: emphasis, code and links only."""
    tokens = _MD.parseInline(text, {})
    for token in tokens:
        token.children = _safe_inline(token.children or [])
    html = _MD.renderer.render(tokens, _MD.options, {})
    return _defang(_INLINE_CLEANER.clean(html))


def plain_text(text: str) -> str:
    """Markdown to plain text, one line per block, for search, CSV cells and titles."""
    lines: list[str] = []
    for token in _MD.parse(text, {}):
        if token.type == "inline":
            lines.append(_inline_text(token.children or []))
        elif token.type in ("fence", "code_block"):
            lines.append(token.content.rstrip("\n"))
    return "\n".join(line for line in lines if line)


def outline(text: str) -> list[Heading]:
    """The headings of a body that are not nested in lists or quotes, as `render_markdown` shows them."""
    return [
        Heading(level=int(token.tag[1]), text=token.meta["text"], anchor=str(token.attrGet("id")),
                line=token.map[0] + 1 if token.map else 1)
        for token in _block_tokens(text)
        if token.type == "heading_open" and token.level == 0
    ]


def section_key(heading_text: str) -> str:
    """How a heading's text is compared with a section name such as "Key takeaways"."""
    return heading_text.strip().rstrip(":").strip().casefold()


def _block_tokens(text: str) -> list[Token]:
    tokens = _MD.parse(text, {})
    _shift_headings(tokens)
    for token in tokens:
        if token.type == "inline":
            token.children = _safe_inline(token.children or [])
        elif token.type in ("th_open", "td_open"):
            _plain_cell(token)
    _anchor_headings(tokens)
    return _wrap_sections(tokens)


def _shift_headings(tokens: list[Token]) -> None:
    # The page has its own h1. A body that uses `#` moves every heading down one rank; one that
    # starts at `##` (as the shipped lessons do) already fits. Below h4 the ranks stop helping.
    shift = 1 if any(t.type == "heading_open" and t.tag == "h1" for t in tokens) else 0
    for token in tokens:
        if token.type in ("heading_open", "heading_close"):
            token.tag = f"h{min(int(token.tag[1]) + shift, MAX_HEADING_LEVEL)}"


def _plain_cell(token: Token) -> None:
    # Alignment comes as a style attribute, which is never allowed; header cells get a scope.
    token.attrs.pop("style", None)
    if token.type == "th_open":
        token.attrSet("scope", "col")


def _safe_inline(children: list[Token]) -> list[Token]:
    kept: list[Token] = []
    open_links: list[bool] = []
    for child in children:
        if child.type == "link_open":
            open_links.append(_vet_link(child))
            if open_links[-1]:
                kept.append(child)
        elif child.type == "link_close":
            if not open_links or open_links.pop():
                kept.append(child)
        elif child.type == "image":
            kept.append(Token("text", "", 0, content=_inline_text(child.children or [])))
        else:
            if child.type in ("s_open", "s_close"):
                child.tag = "del"
            kept.append(child)
    return kept


def _vet_link(token: Token) -> bool:
    href = str(token.attrGet("href") or "")
    if not _is_safe_href(href):
        return False
    scheme = _SCHEME.match(href)
    if scheme is not None and scheme.group(1).lower() in EXTERNAL_SCHEMES:
        token.attrSet("rel", EXTERNAL_LINK_REL)
        token.attrSet("target", EXTERNAL_LINK_TARGET)
    return True


def _inline_text(children: Iterable[Token]) -> str:
    parts: list[str] = []
    for child in children:
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
        elif child.type == "image":
            parts.append(_inline_text(child.children or []))
    return " ".join("".join(parts).split())


def _anchor_headings(tokens: list[Token]) -> None:
    used: set[str] = set()
    for index, token in enumerate(tokens):
        if token.type == "heading_open":
            text = _inline_text(tokens[index + 1].children or [])
            token.meta["text"] = text
            token.attrSet("id", _unique(_anchor(text), used))


def _anchor(text: str) -> str:
    slug = _NOT_ANCHOR.sub("-", unicodedata.normalize("NFKC", text).casefold().replace("_", "-"))
    return slug[:MAX_ANCHOR_CHARS].strip("-") or "section"


def _unique(anchor: str, used: set[str]) -> str:
    candidate, number = anchor, 1
    while candidate in used:
        number += 1
        candidate = f"{anchor}-{number}"
    used.add(candidate)
    return candidate


def _wrap_sections(tokens: list[Token]) -> list[Token]:
    wrapped: list[Token] = []
    open_tag: str | None = None
    for token in tokens:
        if token.type == "heading_open" and token.level == 0 and token.tag == "h2":
            if open_tag is not None:
                wrapped.append(Token("lesson_section_close", open_tag, -1, block=True))
                open_tag = None
            wrapper = _SECTIONS.get(section_key(token.meta["text"]))
            if wrapper is not None:
                open_tag, css_class = wrapper
                attrs = {"class": css_class, "aria-labelledby": str(token.attrGet("id"))}
                wrapped.append(Token("lesson_section_open", open_tag, 1, attrs=attrs, block=True))
        wrapped.append(token)
    if open_tag is not None:
        wrapped.append(Token("lesson_section_close", open_tag, -1, block=True))
    return wrapped


def _defang(html: str) -> str:
    return _HANDLER_IN_TEXT.sub(r"\1&#61;", _SCHEME_IN_TEXT.sub(r"\1&#58;", html))
