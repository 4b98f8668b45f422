"""Terminal escape sequences in a log: the colours kept as named classes, everything else dropped.

A step's output is what a program wrote for a terminal: colours and bold as SGR sequences
(`ESC [ ... m`), and also cursor moves, titles (OSC), and bare control characters. The website
shows a log as text with spans around it, and the text must never become markup: this module
returns plain text segments, each with the names of the styles in force (`fg-red`, `bold`,
...), which the web layer escapes and wraps. The style state runs on from one segment, line and
chunk to the next, as in a terminal, and is a small value (`Style`) that can be carried over.

Everything that is not an SGR sequence is dropped whole: other CSI sequences (cursor moves,
erasing), OSC strings (ended by BEL or ESC \\), two-byte escapes, and C0 control characters other
than the tab. A carriage return that does not end a line keeps what follows it, as a terminal's
progress bar would show it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

COLOURS = ("black", "red", "green", "yellow", "blue", "magenta", "cyan", "white")

# One alternation, tried at every escape character: an OSC string, a CSI sequence, or any
# other escape (ESC and one byte); a lone ESC at the very end is dropped too.
_ESCAPE = re.compile(
    r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\|$)"  # OSC ... BEL or ST (or cut off)
    r"|\x1b\[([0-?]*)[ -/]*([@-~]|$)"  # CSI: parameters, intermediates, final byte
    r"|\x1b[ -/]*[0-~]?"  # any other escape: intermediates and a final byte, or ESC alone
    r"|\x9b[0-?]*[ -/]*[@-~]?"  # the one-byte CSI (C1), rare but cheap to drop
)
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


@dataclass(frozen=True)
class Style:
    """The SGR attributes in force: a foreground and background colour class, and flags."""

    fg: str | None = None
    bg: str | None = None
    bold: bool = False
    dim: bool = False
    italic: bool = False
    underline: bool = False

    def classes(self) -> tuple[str, ...]:
        """The CSS class names of this style, in a fixed order ("" for the plain style)."""
        names: list[str] = []
        if self.fg:
            names.append(f"fg-{self.fg}")
        if self.bg:
            names.append(f"bg-{self.bg}")
        names += [n for n in ("bold", "dim", "italic", "underline") if getattr(self, n)]
        return tuple(names)

    def encode(self) -> str:
        """The style as SGR parameters ("" for plain): what a client hands back to carry it
        over to the next piece of the log (`decode` reads it)."""
        codes: list[str] = []
        for flag, code in (("bold", "1"), ("dim", "2"), ("italic", "3"), ("underline", "4")):
            if getattr(self, flag):
                codes.append(code)
        for colour, base in ((self.fg, 30), (self.bg, 40)):
            if colour:
                bright = colour.startswith("bright-")
                index = COLOURS.index(colour.removeprefix("bright-"))
                codes.append(str(base + index + (60 if bright else 0)))
        return ";".join(codes)


PLAIN = Style()


def decode(parameters: str) -> Style:
    """A style from SGR parameters as `Style.encode` writes them (anything else is ignored)."""
    if len(parameters) > 64:
        return PLAIN
    return apply_sgr(PLAIN, parameters)


def apply_sgr(style: Style, parameters: str) -> Style:
    """The style after an SGR sequence with these parameters (`1;31`, `0`, `38;5;208`)."""
    # An empty parameter is 0; one of more than 9 digits is no code (-1: ignored), never
    # given to int() (past 4300 digits it refuses: a log line would break its page).
    codes = [_code(p) for p in re.split(r"[;:]", parameters)] or [0]
    position = 0
    while position < len(codes):
        code = codes[position]
        position += 1
        if code in (38, 48):
            # Extended colours: 5;N (256 colours) or 2;R;G;B. The first 16 of the 256 are the
            # named ones; the others have no class and leave the colour as it was.
            mode = codes[position] if position < len(codes) else 0
            if mode == 5 and position + 1 < len(codes):
                number = codes[position + 1]
                if number < 16:
                    style = _coloured(style, code == 38, _named(number % 8, bright=number >= 8))
                position += 2
            elif mode == 2:
                position += 4
            else:
                position += 1
            continue
        style = _apply_code(style, code)
    return style


def _code(parameter: str) -> int:
    if not (parameter.isascii() and parameter.isdigit()):  # not "²", which int() refuses
        return 0
    return int(parameter) if len(parameter) <= 9 else -1


def _named(index: int, *, bright: bool) -> str:
    return f"bright-{COLOURS[index]}" if bright else COLOURS[index]


def _coloured(style: Style, foreground: bool, colour: str | None) -> Style:
    return replace(style, fg=colour) if foreground else replace(style, bg=colour)


_FLAGS = {
    1: {"bold": True},
    2: {"dim": True},
    3: {"italic": True},
    4: {"underline": True},
    22: {"bold": False, "dim": False},
    23: {"italic": False},
    24: {"underline": False},
}


def _apply_code(style: Style, code: int) -> Style:
    if code == 0:
        return PLAIN
    flags = _FLAGS.get(code)
    if flags is not None:
        return Style(
            style.fg,
            style.bg,
            flags.get("bold", style.bold),
            flags.get("dim", style.dim),
            flags.get("italic", style.italic),
            flags.get("underline", style.underline),
        )
    for base, foreground in ((30, True), (40, False), (90, True), (100, False)):
        if base <= code < base + 8:
            return _coloured(style, foreground, _named(code - base, bright=base >= 90))
    if code in (39, 49):
        return _coloured(style, code == 39, None)
    return style  # blink, inverse, fonts...: no class


def segments(line: str, style: Style = PLAIN) -> tuple[list[tuple[Style, str]], Style]:
    """One line of output (without its newline) as text segments with their style, and the
    style in force at its end. The text holds no escape sequence and no control character but
    the tab."""
    if "\r" in line:
        line = line.rsplit("\r", 1)[-1] or line.rstrip("\r").rsplit("\r", 1)[-1]
    found: list[tuple[Style, str]] = []
    position = 0
    for match in _ESCAPE.finditer(line):
        _add(found, style, line[position : match.start()])
        position = match.end()
        if match.group(2) == "m":
            style = apply_sgr(style, match.group(1) or "0")
    _add(found, style, line[position:])
    return found, style


def plain(line: str) -> str:
    """A line's text with every escape sequence and control character dropped."""
    return "".join(text for _, text in segments(line)[0])


def _add(found: list[tuple[Style, str]], style: Style, text: str) -> None:
    text = _CONTROLS.sub("", text)
    if not text:
        return
    if found and found[-1][0] == style:
        found[-1] = (style, found[-1][1] + text)
    else:
        found.append((style, text))
