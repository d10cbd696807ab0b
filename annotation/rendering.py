"""Model responses (and the replies of earlier turns) as safe HTML for the annotator's page.

The stored text stays what the model wrote; this HTML is made for display only and never
stored or exported. Two layers, so a bug in one is not an injection: markdown-it-py in CommonMark
mode with HTML input off (a `<script>` in the text is escaped as text), then nh3 (the Ammonia
sanitizer) keeping only the allow-listed tags and attributes and links to http, https and
mailto. No inline style or script survives, so the page's Content-Security-Policy holds.

Streaming text is partial Markdown: CommonMark reads any prefix as a document (an unclosed
code fence runs to the end), so each poll renders what has arrived so far.
"""

from __future__ import annotations

import functools
import html
import re

import nh3
from markdown_it import MarkdownIt

# Deeper than any answer nests; markdown-it drops the rest of a document nested deeper, so
# such a text is shown as plain text instead (see _rendered).
MAX_NESTING = 40

# The parser's time grows linearly with the text, up to about 25 µs a character for the worst
# inputs (long runs of table pipes or brackets): past this length (far beyond a response of a
# few thousand tokens, or an edit's 20,000 characters) the text is shown as plain text.
MAX_MARKDOWN_CHARS = 40_000

_markdown = (
    MarkdownIt("commonmark", {"html": False, "breaks": True, "maxNesting": MAX_NESTING})
    .enable(["table", "strikethrough"])
    # An image would load from wherever the model points (and the CSP blocks other origins
    # anyway): `![alt](url)` shows as "!" and a link to the url instead.
    .disable("image")
)

_sanitizer = nh3.Cleaner(
    tags={
        *("p", "br", "hr", "em", "strong", "s", "code", "pre", "blockquote"),
        *("ul", "ol", "li", "h1", "h2", "h3", "h4", "h5", "h6", "a"),
        *("table", "thead", "tbody", "tr", "th", "td"),
    },
    attributes={"a": {"href", "title"}, "ol": {"start"}},
    url_schemes={"http", "https", "mailto"},
    url_relative="deny",  # a model's link never points into Tandem itself
    # A model's link is not Tandem's endorsement, learns nothing of the page it was on, and
    # opens beside the comparison rather than in place of it.
    link_rel="nofollow noopener noreferrer",
    set_tag_attribute_values={"a": {"target": "_blank"}},
)

_SURROGATE = re.compile("[\ud800-\udfff]")


def markdown_html(text: str) -> str:
    """`text` rendered as sanitized HTML, for innerHTML. Never raises on any text."""
    # Lone surrogates cannot be encoded for the sanitizer (nor stored by the database).
    text = _SURROGATE.sub("\ufffd", text)
    if len(text) > MAX_MARKDOWN_CHARS:
        return plain_text_html(text)
    return _rendered(text)


# The page polls every 300 ms while a pair streams, and asks again and again for a side that is
# complete (or has not changed since the last poll). Bounded: at most 256 texts of at most
# MAX_MARKDOWN_CHARS each.
@functools.lru_cache(maxsize=256)
def _rendered(text: str) -> str:
    env: dict = {}
    tokens = _markdown.parse(text, env)
    if any(token.level >= MAX_NESTING - 1 for token in tokens):
        return plain_text_html(text)  # nested too deep: markdown-it dropped the rest
    html_out = _markdown.renderer.render(tokens, _markdown.options, env)
    # Without the newline after the last block, a one-paragraph reply reads as its own text.
    return _sanitizer.clean(html_out).strip()


def plain_text_html(text: str) -> str:
    """`text` as it was written, escaped, its line breaks kept (the stylesheet's .plain-text)."""
    return f'<p class="plain-text">{html.escape(text)}</p>'
