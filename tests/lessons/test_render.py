"""Rendering trainer Markdown: safe whatever is written, shaped for the lesson page, and deterministic."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lessons
from lessons.render import Heading, outline, plain_text, render_inline, render_markdown

CONTENT = Path(lessons.__file__).parent / "content"
PROPERTY = settings(max_examples=300, deadline=None, database=None)  # shared checkout: no .hypothesis folder

ALLOWED_TAGS = {
    "p", "h2", "h3", "h4", "ul", "ol", "li", "strong", "em", "del", "code", "pre", "blockquote", "a",
    "table", "thead", "tbody", "tr", "th", "td", "hr", "br", "aside", "section",
}
INLINE_TAGS = {"strong", "em", "del", "code", "a", "br"}
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title", "rel", "target"},
    "h2": {"id"}, "h3": {"id"}, "h4": {"id"},
    "th": {"scope"}, "ol": {"start"},
    "aside": {"class", "aria-labelledby"}, "section": {"class", "aria-labelledby"},
}


class Elements(HTMLParser):
    """Every start tag in a fragment, with its attributes as the browser would read them."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, dict[str, str | None]]] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, dict(attrs)))

    handle_startendtag = handle_starttag


def assert_safe(html: str, tags: set[str] = ALLOWED_TAGS) -> None:
    """Only allowlisted elements and attributes, only safe link targets, and no live script anywhere."""
    lowered = html.lower()
    for needle in ("<script", "<iframe", "<img", "<svg", "<object", "<embed", "<form", "<style",
                   "javascript:", "vbscript:", "data:"):
        assert needle not in lowered, f"{needle!r} in {html!r}"
    assert not re.search(r"\son\w+=", html, re.IGNORECASE), html
    for tag, attrs in Elements(html).found:
        assert tag in tags, f"<{tag}> in {html!r}"
        assert set(attrs) <= ALLOWED_ATTRIBUTES.get(tag, set()), f"<{tag} {attrs}> in {html!r}"
        href = attrs.get("href")
        if href is not None:
            assert re.match(r"(https?:|mailto:|#)", href, re.IGNORECASE), href


XSS = {
    "script": "<script>alert(1)</script>",
    "script-block": "Hi\n\n<script>\nalert(1)\n</script>\n",
    "img-onerror": "<img src=x onerror=alert(1)>",
    "javascript-link": "[x](javascript:alert(1))",
    "mixed-case-scheme": "[x](JaVaScRiPt:alert(1))",
    "data-link": "[x](data:text/html,<script>alert(1)</script>)",
    "vbscript-link": "[x](vbscript:msgbox(1))",
    "iframe": '<iframe src="https://evil.example"></iframe>',
    "anchor-onclick": '<a href="https://example.com" onclick="alert(1)">x</a>',
    "raw-html-block": '<div style="position:fixed" onmouseover="alert(1)">\n\n*hi*\n\n</div>',
    "svg-onload": "<svg onload=alert(1)>",
    "autolink": "<javascript:alert(1)>",
    "reference-link": "[x][evil]\n\n[evil]: javascript:alert(1)",
    "entity-scheme": "[x](&#106;avascript:alert(1))",
    "hex-entity-scheme": "[x](&#x6A;&#x61;vascript&#x3A;alert(1))",
    "entity-text": "&#106;avascript:alert(1)",
    "tab-in-scheme": "[x](<java\tscript:alert(1)>)",
    "image-javascript": "![x](javascript:alert(1))",
    "image-onerror-title": '![x](https://example.com/a.png "x onerror=alert(1)")',
    "object-embed-form": "<object data=x></object><embed src=x><form action=x><input></form>",
    "style": "<style>body{display:none}</style>",
    "html-comment": "<!-- <script>alert(1)</script> -->",
    "link-title-breakout": '[x](https://example.com "a\\" onclick=\\"alert(1)")',
    "protocol-relative": "[x](//evil.example/path)",
}


@pytest.mark.parametrize("markdown", XSS.values(), ids=XSS.keys())
def test_script_injection_is_neutralised(markdown: str) -> None:
    assert_safe(render_markdown(markdown))


@pytest.mark.parametrize("markdown", XSS.values(), ids=XSS.keys())
def test_script_injection_is_neutralised_in_inline_text(markdown: str) -> None:
    assert_safe(render_inline(markdown), INLINE_TAGS)


@pytest.mark.parametrize(
    "markdown", [XSS["javascript-link"], XSS["mixed-case-scheme"], XSS["data-link"], XSS["reference-link"],
                 XSS["entity-scheme"], "[x](/relative/path)", "[x](//evil.example)"],
)
def test_a_link_to_a_forbidden_target_becomes_its_text(markdown: str) -> None:
    assert render_markdown(markdown) == "<p>x</p>\n"


def test_raw_html_is_shown_as_text_not_obeyed() -> None:
    assert render_markdown("<b onclick=alert(1)>bold</b>") == "<p>&lt;b onclick&#61;alert(1)&gt;bold&lt;/b&gt;</p>\n"


def test_text_that_mentions_a_script_scheme_reads_the_same_but_cannot_be_mistaken_for_one() -> None:
    html = render_markdown("Never paste `javascript:` into the address bar.")

    assert html == "<p>Never paste <code>javascript&#58;</code> into the address bar.</p>\n"


def test_images_are_dropped_and_their_alt_text_kept() -> None:
    assert render_markdown("See ![a *chart* of replies](https://example.com/chart.png).") == (
        "<p>See a chart of replies.</p>\n"
    )


# --- links --------------------------------------------------------------------------------------


def test_external_links_open_in_a_new_tab_without_an_opener_or_referrer() -> None:
    assert render_markdown('[CNN](https://cnn.com/a "Report")') == (
        '<p><a href="https://cnn.com/a" title="Report" rel="noopener noreferrer" target="_blank">CNN</a></p>\n'
    )


def test_mail_links_and_links_within_the_page_stay_in_place() -> None:
    html = render_markdown("[write](mailto:hr@example.com) or see [takeaways](#key-takeaways)")

    assert html == '<p><a href="mailto:hr@example.com">write</a> or see <a href="#key-takeaways">takeaways</a></p>\n'


# --- structure ----------------------------------------------------------------------------------


def test_key_takeaways_are_wrapped_in_an_aside_labelled_by_their_heading() -> None:
    html = render_markdown("## Intro\n\nText.\n\n## Key takeaways\n\n- One.\n\n## Pause\n\nThink.\n")

    assert html == (
        '<h2 id="intro">Intro</h2>\n<p>Text.</p>\n'
        '<aside class="takeaways" aria-labelledby="key-takeaways">\n'
        '<h2 id="key-takeaways">Key takeaways</h2>\n<ul>\n<li>One.</li>\n</ul>\n</aside>\n'
        '<h2 id="pause">Pause</h2>\n<p>Think.</p>\n'
    )


def test_sources_are_wrapped_in_a_section_that_runs_to_the_end() -> None:
    html = render_markdown("## Key takeaways\n\n- One.\n\n### Detail\n\nMore.\n\n## Sources\n\n- A book.\n")

    assert html == (
        '<aside class="takeaways" aria-labelledby="key-takeaways">\n'
        '<h2 id="key-takeaways">Key takeaways</h2>\n<ul>\n<li>One.</li>\n</ul>\n'
        '<h3 id="detail">Detail</h3>\n<p>More.</p>\n</aside>\n'
        '<section class="sources" aria-labelledby="sources">\n'
        '<h2 id="sources">Sources</h2>\n<ul>\n<li>A book.</li>\n</ul>\n</section>\n'
    )


def test_a_takeaways_heading_inside_a_quote_is_not_wrapped() -> None:
    html = render_markdown("> ## Key takeaways\n>\n> - quoted\n")

    assert "<aside" not in html and '<h2 id="key-takeaways">' in html


def test_level_one_headings_become_h2_and_every_level_shifts_down_to_at_most_h4() -> None:
    html = render_markdown("# One\n\n## Two\n\n### Three\n\n#### Four\n\n###### Six\n")

    assert re.findall(r"<(h\d)", html) == ["h2", "h3", "h4", "h4", "h4"]


def test_a_body_that_starts_at_level_two_keeps_its_levels() -> None:
    html = render_markdown("## Two\n\n### Three\n\nSetext\n------\n")

    assert re.findall(r"<(h\d)", html) == ["h2", "h3", "h2"]


def test_heading_ids_are_slugs_of_their_text_and_unique() -> None:
    html = render_markdown("## Notes\n\n## Notes\n\n## Café & *crème*: 2010!\n\n## ***\n\n## `code_name`\n")

    assert re.findall(r'id="([^"]+)"', html) == ["notes", "notes-2", "café-crème-2010", "section", "code-name"]


def test_tables_render_with_header_scopes_and_no_inline_styles() -> None:
    html = render_markdown("| Say | Instead |\n|:--|--:|\n| **Sorry** | `if` |\n")

    assert html == (
        '<table>\n<thead>\n<tr>\n<th scope="col">Say</th>\n<th scope="col">Instead</th>\n</tr>\n</thead>\n'
        "<tbody>\n<tr>\n<td><strong>Sorry</strong></td>\n<td><code>if</code></td>\n</tr>\n</tbody>\n</table>\n"
    )


def test_lists_quotes_code_and_strikethrough_render() -> None:
    html = render_markdown("- a\n- b\n\n3. c\n4. d\n\n> quote\n\n```python\nx = '<b>'\n```\n\n~~old~~ *new*\n\n---\n")

    assert html == (
        "<ul>\n<li>a</li>\n<li>b</li>\n</ul>\n"
        '<ol start="3">\n<li>c</li>\n<li>d</li>\n</ol>\n'
        "<blockquote>\n<p>quote</p>\n</blockquote>\n"
        "<pre><code>x = '&lt;b&gt;'\n</code></pre>\n"
        "<p><del>old</del> <em>new</em></p>\n<hr>\n"
    )


def test_every_shipped_lesson_renders_safely_with_its_takeaways_set_apart() -> None:
    for path in sorted(CONTENT.glob("*/*.md")):
        body = path.read_text(encoding="utf-8").split("---\n", 2)[2]

        html = render_markdown(body)

        assert_safe(html)
        assert html.count('<aside class="takeaways" aria-labelledby="key-takeaways">') == 1, path
        assert html.count('<section class="sources" aria-labelledby="sources">') == 1, path
        assert all(' id="' in h2 for h2 in re.findall(r"<h2[^>]*>", html)), path


def test_rendering_is_deterministic() -> None:
    body = (CONTENT / "own" / "02-apologizing-well.md").read_text(encoding="utf-8")

    assert len({render_markdown(body) for _ in range(3)}) == 1


# --- inline text, plain text and the outline ----------------------------------------------------


def test_inline_text_keeps_emphasis_code_and_links_but_no_blocks() -> None:
    html = render_inline("**Apologise** with `care` — [why](https://example.com)\n# not a heading\n- nor a list")

    assert html == (
        '<strong>Apologise</strong> with <code>care</code> — '
        '<a href="https://example.com" rel="noopener noreferrer" target="_blank">why</a>\n# not a heading\n- nor a list'
    )


def test_plain_text_drops_markup_and_keeps_the_words() -> None:
    markdown = "# A *big* title\n\nSee [the report](https://x.example) &amp; ![a chart](c.png).\n\n- `one`\n- two\n"

    assert plain_text(markdown) == "A big title\nSee the report & a chart.\none\ntwo"


def test_plain_text_of_raw_html_is_the_literal_text() -> None:
    assert plain_text("<script>alert(1)</script>") == "<script>alert(1)</script>"


def test_outline_lists_top_level_headings_as_rendered() -> None:
    assert outline("# Start\n\nText\n\n> # Quoted\n\n## Key takeaways\n") == [
        Heading(level=2, text="Start", anchor="start", line=1),
        Heading(level=3, text="Key takeaways", anchor="key-takeaways", line=7),
    ]


# --- properties ---------------------------------------------------------------------------------

FRAGMENTS = [
    "<script>", "</script>", "<iframe src=x>", "<svg onload=alert(1)>", "<img src=x onerror=alert(1)>",
    "javascript:", "JaVaScRiPt:", "vbscript:", "data:text/html,", "&#106;", "&#x6A;", "&#58;", "%6A",
    "[", "]", "(", ")", "<", ">", "![", '"', "'", "`", "*", "_", "~~", "#", "## ", "\n", "\n\n", "|", "- ",
    "> ", ":", "&", ";", "=", " on", "onclick=", "[r]: ", "[r]", "<a href=", "\t", "\\", "https://x.example",
    "mailto:a@b.c", "Key takeaways", "x", " ",
]
markdown_text = st.one_of(
    st.text(max_size=200),
    st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=3)), max_size=60).map("".join),
)


@PROPERTY
@given(text=markdown_text)
def test_no_text_renders_to_script_handlers_or_frames(text: str) -> None:
    assert_safe(render_markdown(text))
    assert_safe(render_inline(text), INLINE_TAGS)


@PROPERTY
@given(text=markdown_text)
def test_rendering_any_text_twice_gives_the_same_html(text: str) -> None:
    assert render_markdown(text) == render_markdown(text)
