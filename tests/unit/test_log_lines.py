"""Logs people can read: terminal escapes (domain/ansi.py), lines with their times and searched
(domain/log_lines.py), and the website's rendering of a line (web/site/logview.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from orchestra.domain import ansi
from orchestra.domain.log_lines import Line, LineSplitter, Timestamper, grep_line, matches, stamp
from orchestra.web.site.logview import line_html, search_pattern

T1 = datetime(2026, 12, 6, 8, 0, 1, 123456, tzinfo=UTC)
T2 = datetime(2026, 12, 6, 8, 0, 2, tzinfo=UTC)


def test_ansi_colours_and_bold_become_styles_and_reset_ends_them() -> None:
    parts, end = ansi.segments("a \x1b[1;31mred bold\x1b[0m plain \x1b[32mgreen")
    assert [(s.classes(), t) for s, t in parts] == [
        ((), "a "),
        (("fg-red", "bold"), "red bold"),
        ((), " plain "),
        (("fg-green",), "green"),
    ]
    assert end.classes() == ("fg-green",)  # it runs on to the next line


def test_ansi_bright_background_256_and_truecolour_codes() -> None:
    parts, _ = ansi.segments("\x1b[93;44mx\x1b[38;5;9my\x1b[38;2;1;2;3mz\x1b[39;49mw")
    assert [(s.classes(), t) for s, t in parts] == [
        (("fg-bright-yellow", "bg-blue"), "x"),
        # A true colour has no class: the colour stays (and the same style is one segment).
        (("fg-bright-red", "bg-blue"), "yz"),
        ((), "w"),
    ]


def test_ansi_every_other_escape_and_control_character_is_dropped() -> None:
    text = "\x1b]0;title\x07a\x1b[2K\x1b[1Gb\x1b(Bc\x07\x08d\te\x1b"
    parts, _ = ansi.segments(text)
    assert "".join(t for _, t in parts) == "abcd\te"
    assert ansi.plain("50%\r100%") == "100%"  # a progress bar shows its last state
    assert ansi.plain("windows line\r") == "windows line"


def test_ansi_style_encodes_and_decodes_to_carry_it_between_requests() -> None:
    _, style = ansi.segments("\x1b[1;4;35;102mx")
    assert ansi.decode(style.encode()) == style
    assert ansi.decode("not;an;sgr;x" * 10) == ansi.PLAIN


def test_timestamper_prefixes_every_line_and_keeps_the_bytes() -> None:
    stamper = Timestamper()
    out = stamper.feed(b"one\ntw", T1) + stamper.feed(b"o\nthree\n", T2) + stamper.feed(b"", T2)
    assert out == (
        b"2026-12-06T08:00:01.123Z one\n"
        b"2026-12-06T08:00:01.123Z two\n"
        b"2026-12-06T08:00:02.000Z three\n"
    )
    assert stamp(None) == "-" + " " * 23
    assert len(stamp(T1)) == 24


def test_line_splitter_numbers_lines_across_chunks_with_their_first_byte_time() -> None:
    splitter = LineSplitter(number=10)
    lines = [*splitter.feed(b"a\nb", T1), *splitter.feed(b"c\nd", T2)]
    rest = splitter.rest()
    assert [(x.number, x.data, x.date) for x in lines] == [(11, b"a", T1), (12, b"bc", T1)]
    assert rest is not None and (rest.number, rest.data, rest.complete) == (13, b"d", False)
    assert splitter.consumed == 7


def test_search_ignores_case_and_escapes_and_prints_like_grep() -> None:
    line = Line(3, None, b"\x1b[31mERROR\x1b[0m: disk full")
    assert matches(line, "error: disk")
    assert not matches(line, "warning")
    assert grep_line(line) == b"3:ERROR: disk full\n"


def test_line_html_escapes_the_log_and_wraps_colours_in_classes() -> None:
    line = Line(12, T1, b"<script>alert(1)</script> \x1b[31m&red\x1b[0m")
    html = str(line_html(line, ansi.PLAIN, None))
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert '<span class="a-fg-red">&amp;red</span>' in html
    assert 'id="L12"' in html and 'href="#L12"' in html
    assert 'data-utc="2026-12-06T08:00:01.123456+00:00"' in html
    assert 'title="2026-12-06T08:00:01.123Z">2026-12-06T08:00:01.123Z<' in html


def test_line_html_marks_search_matches_escaped() -> None:
    line = Line(1, None, b"a <b> A")
    html = str(line_html(line, ansi.PLAIN, search_pattern("a")))
    assert html.count("<mark>") == 2
    assert "&lt;b&gt;" in html
