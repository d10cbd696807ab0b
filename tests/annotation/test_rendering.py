"""Responses as HTML (annotation.rendering): the Markdown a model writes becomes elements, a
prefix of it (streaming) renders, and hostile text is neutralised, in bounded time."""

from __future__ import annotations

import time
from html.parser import HTMLParser

import pytest

from annotation.rendering import MAX_MARKDOWN_CHARS, markdown_html


def cpu_seconds(render, text: str) -> float:
    """The CPU time `render(text)` took in this process: what a request pays, whatever else the
    machine is running (wall time on a loaded machine would measure the load)."""
    started = time.process_time()
    render(text)
    return time.process_time() - started


class _Elements(HTMLParser):
    """The elements, attributes and text of an HTML fragment, as a browser would read them."""

    def __init__(self, fragment: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text = ""
        self.feed(fragment)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text += data

    def names(self) -> list[str]:
        return [tag for tag, _ in self.tags]

    def links(self) -> list[dict[str, str | None]]:
        return [attrs for tag, attrs in self.tags if tag == "a"]


def test_lists_emphasis_headings_and_code_become_elements():
    text = (
        "## Steps\n\n1. Boil *water*\n2. Add **pasta**\n\n- a\n- b\n\n"
        "Use `len()`:\n\n```python\nprint(len('<b>'))\n```\n\n> quoted ~~not~~\n\n"
        "| a | b |\n|---|---|\n| 1 | 2 |"
    )
    elements = _Elements(markdown_html(text))
    for tag in ("h2", "ol", "ul", "li", "em", "strong", "code", "pre", "blockquote", "s", "table"):
        assert tag in elements.names(), tag
    # Code is text, whatever it holds.
    assert "print(len('<b>'))" in elements.text and "b" not in elements.names()


def test_single_line_breaks_are_kept():
    assert _Elements(markdown_html("one\ntwo")).names() == ["p", "br"]


@pytest.mark.parametrize(
    "partial",
    [
        "Here is the code:\n\n```python\ndef f():\n    return 1",  # an unclosed fence
        "Some **bold",
        "1. first\n2.",
        "[a link](https://exa",
        "| a | b |\n|---",
    ],
)
def test_a_prefix_of_markdown_renders_and_keeps_its_text(partial):
    elements = _Elements(markdown_html(partial))
    for word in ("code", "def f", "return 1", "first", "bold", "a link"):
        if word in partial:
            assert word in elements.text


def test_an_unclosed_fence_is_a_code_block_while_it_streams():
    assert "pre" in _Elements(markdown_html("Try:\n```\nls -l\n")).names()


@pytest.mark.parametrize(
    "hostile",
    [
        "<script>alert(1)</script>",
        '<img src=x onerror="alert(1)">',
        "<iframe src=javascript:alert(1)></iframe>",
        '<a href="javascript:alert(1)">x</a>',
        '<svg onload="alert(1)">',
        "<style>body{display:none}</style>",
    ],
)
def test_html_in_a_response_is_shown_as_text(hostile):
    elements = _Elements(markdown_html(f"Sure! {hostile}"))
    assert elements.names() == ["p"]
    assert elements.text.strip() == f"Sure! {hostile}"


@pytest.mark.parametrize(
    "link",
    [
        "[click](javascript:alert(1))",
        "[click](JaVaScRiPt:alert(1))",
        "[click](vbscript:msgbox(1))",
        "[click](data:text/html;base64,PHNjcmlwdD4=)",
        "[click](/admin/)",
        "[click](//evil.example/)",
        "<javascript:alert(1)>",
    ],
)
def test_only_web_and_mail_links_keep_an_address(link):
    for tag, attrs in _Elements(markdown_html(link)).tags:
        assert "href" not in attrs, (tag, attrs)
        assert not any(name.startswith("on") for name in attrs)


def test_a_web_link_opens_beside_the_page_and_is_not_endorsed():
    (link,) = _Elements(markdown_html("[docs](https://example.org/a?b=1)")).links()
    assert link["href"] == "https://example.org/a?b=1"
    assert link["target"] == "_blank"
    assert set(link["rel"].split()) >= {"nofollow", "noopener", "noreferrer"}
    (mail,) = _Elements(markdown_html("<mailto:someone@example.org>")).links()
    assert mail["href"] == "mailto:someone@example.org"


def test_images_are_links_never_loaded():
    elements = _Elements(markdown_html("![cat](https://example.org/cat.png)"))
    assert "img" not in elements.names() and "a" in elements.names()


@pytest.mark.parametrize("marker", [">", "- ", "1. ", "> - "])
def test_deep_nesting_is_fast_and_loses_no_text(marker):
    text = marker * 10_000 + "the end"
    assert cpu_seconds(markdown_html, text) < 1.0
    rendered = markdown_html(text)
    # Too deep to be an answer: shown as the text it is, all of it.
    assert _Elements(rendered).text == text


def test_nesting_an_answer_uses_is_rendered():
    elements = _Elements(markdown_html("- a\n  - b\n    - c\n      > d"))
    assert elements.names().count("ul") == 3 and "blockquote" in elements.names()


@pytest.mark.parametrize(
    "pathological",
    ["[" * 20_000, "[a](" * 5_000, "*a " * 7_000, "|a" * 10_000 + "\n" + "|-" * 10_000],
)
def test_pathological_text_renders_in_bounded_time(pathological):
    # About 0.3 s for 20,000 characters of the worst of these on a developer's machine.
    assert cpu_seconds(markdown_html, pathological) < 2.0


def test_text_past_the_limit_is_plain_text():
    text = "*a* " * (MAX_MARKDOWN_CHARS // 4 + 1)
    elements = _Elements(markdown_html(text))
    assert "em" not in elements.names() and elements.text == text


def test_characters_no_database_stores_do_not_break_rendering():
    elements = _Elements(markdown_html("a\x00b \ud800 c"))
    assert elements.text.strip() == "a\ufffdb \ufffd c"
