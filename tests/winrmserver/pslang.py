"""Tokenizer and parser for the small PowerShell subset the emulator runs.

The grammar (argument-mode PowerShell, statement by statement)::

    script     := statement { (';' | newline) statement }
    statement  := '' | 'exit' [number] | variable '=' pipeline | pipeline
    pipeline   := element { '|' command }          element := command | literal
    command    := name { '-'param[':'argument] | argument }
    argument   := word { ',' word }                 word := bareword | 'single' | "double"
                                                            | number | $true | $false | $null
                                                            | '@{' name '=' word { ';' name '=' word } '}'

Quoting follows PowerShell: '' inside '…' is one quote, and the typographic quotes
(‘ ’ ‚ ‛, “ ” „) count as quotes too; en/em dashes start parameters; a backtick
escapes the next character outside single quotes and continues a line. Anything
valid in PowerShell but outside this grammar (subexpressions, script blocks,
variables other than the preference variables, redirection, keywords) is refused
with :class:`ParseError` before anything runs, so nothing half-executes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ArrayValue",
    "AssignAst",
    "CommandAst",
    "ExitAst",
    "ExprAst",
    "ParamArg",
    "ParseError",
    "PipelineAst",
    "Script",
    "Value",
    "parse",
]

SINGLE_QUOTES = "'\u2018\u2019\u201a\u201b"
DOUBLE_QUOTES = '"\u201c\u201d\u201e'
DASHES = "-\u2013\u2014\u2015"
_WHITESPACE = " \t\f\v\u00a0\u0085"
_TERMINATORS = set(";|,(){}&<>\r\n") | set(_WHITESPACE)
_KEYWORDS = {
    "begin", "break", "catch", "class", "continue", "data", "define", "do", "dynamicparam",
    "else", "elseif", "end", "enum", "filter", "finally", "for", "foreach", "from", "function",
    "if", "in", "param", "process", "return", "switch", "throw", "trap", "try", "until",
    "using", "var", "while", "workflow",
}  # fmt: skip
_PREFERENCE_VARIABLES = {"erroractionpreference", "progresspreference", "warningpreference"}
_NUMBER = re.compile(
    r"(?P<sign>[+-]?)(?:0x(?P<hex>[0-9a-f]+)|(?P<dec>\d+(?:\.\d+)?(?:e[+-]?\d+)?|\.\d+(?:e[+-]?\d+)?))"
    r"(?P<suffix>l|d)?(?P<mult>kb|mb|gb|tb|pb)?",
    re.IGNORECASE,
)
_HASH_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MULTIPLIERS = {"kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30, "tb": 1 << 40, "pb": 1 << 50}
_ESCAPES = {
    "0": "\0",
    "a": "\a",
    "b": "\b",
    "e": "\x1b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
}


class ParseError(Exception):
    """A PowerShell ParseException (or an emulator refusal) pointing at the script."""

    def __init__(
        self, message: str, fqid: str, start: int, end: int, *, unsupported: bool = False
    ) -> None:
        super().__init__(message)
        self.message = message
        self.fqid = fqid
        self.start = start
        self.end = end
        self.unsupported = unsupported


def _unsupported(what: str, start: int, end: int) -> ParseError:
    return ParseError(
        f"The test server's PowerShell emulator does not support {what}.",
        "EmulatorUnsupportedSyntax",
        start,
        end,
        unsupported=True,
    )


@dataclass
class Value:
    """One argument word. ``quoted`` words are always strings; others may be numbers."""

    value: Any
    start: int
    end: int
    quoted: bool = False


@dataclass
class ArrayValue:
    items: list[Value]
    start: int
    end: int


Argument = Value | ArrayValue


@dataclass
class ParamArg:
    name: str
    value: Argument | None
    start: int
    end: int


@dataclass
class CommandAst:
    name: str
    start: int
    end: int
    name_end: int
    elements: list[ParamArg | Argument] = field(default_factory=list)


@dataclass
class ExprAst:
    value: Argument
    start: int
    end: int


@dataclass
class PipelineAst:
    elements: list[CommandAst | ExprAst]
    start: int
    end: int


@dataclass
class AssignAst:
    variable: str
    pipeline: PipelineAst
    start: int
    end: int


@dataclass
class ExitAst:
    code: Value | None
    start: int
    end: int


Statement = PipelineAst | AssignAst | ExitAst


@dataclass
class Script:
    text: str
    statements: list[Statement]


def parse(text: str) -> Script:
    """Parse a whole script; raises :class:`ParseError` on the first problem."""
    return _Parser(text).script()


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    # -- character level -----------------------------------------------------

    def peek(self, offset: int = 0) -> str:
        i = self.pos + offset
        return self.text[i] if i < len(self.text) else ""

    def skip_blanks(self) -> None:
        """Skip spaces, comments and backtick line continuations (not newlines)."""
        while self.pos < len(self.text):
            c = self.peek()
            if c in _WHITESPACE:
                self.pos += 1
            elif c == "`" and self.peek(1) in ("\n", "\r"):
                self.pos += 3 if self.text.startswith("`\r\n", self.pos) else 2
            elif c == "<" and self.peek(1) == "#":
                end = self.text.find("#>", self.pos + 2)
                if end == -1:
                    raise ParseError(
                        "Missing closing '#>' at end of block comment.",
                        "MissingEndOfBlockComment",
                        self.pos,
                        len(self.text),
                    )
                self.pos = end + 2
            elif c == "#":
                while self.pos < len(self.text) and self.peek() not in "\r\n":
                    self.pos += 1
            else:
                return

    def at_separator(self) -> bool:
        return self.pos >= len(self.text) or self.peek() in ";\r\n"

    # -- statements ------------------------------------------------------------

    def script(self) -> Script:
        statements: list[Statement] = []
        while True:
            self.skip_blanks()
            if self.pos >= len(self.text):
                return Script(self.text, statements)
            c = self.peek()
            if c in ";\r\n":
                self.pos += 1
                continue
            statements.append(self.statement())
            self.skip_blanks()
            if self.pos < len(self.text) and self.peek() not in ";\r\n":
                raise self._unexpected()

    def _unexpected(self) -> ParseError:
        c = self.peek()
        if c == "|" and self.peek(1) == "|" or c == "&" and self.peek(1) == "&":
            token = c * 2
            return ParseError(
                f"The token '{token}' is not a valid statement separator in this version.",
                "InvalidEndOfLine",
                self.pos,
                self.pos + 2,
            )
        if c in ")}":
            return ParseError(
                f"Unexpected token '{c}' in expression or statement.",
                "UnexpectedToken",
                self.pos,
                self.pos + 1,
            )
        return _unsupported(f"the token '{c}' here", self.pos, self.pos + 1)

    def statement(self) -> Statement:
        start = self.pos
        if self.peek() == "$":
            name_end = self._variable_end(self.pos + 1)
            name = self.text[self.pos + 1 : name_end]
            save = self.pos
            self.pos = name_end
            self.skip_blanks()
            if self.peek() == "=" and self.peek(1) != "=":
                if name.lower() not in _PREFERENCE_VARIABLES and name.lower() != "null":
                    raise _unsupported(f"assigning the variable '${name}'", start, name_end)
                self.pos += 1
                self.skip_blanks()
                if self.at_separator():
                    raise ParseError(
                        "You must provide a value expression following the '=' operator.",
                        "ExpectedValueExpression",
                        self.pos,
                        self.pos + 1,
                    )
                pipeline = self.pipeline()
                return AssignAst(name, pipeline, start, pipeline.end)
            self.pos = save
        word_end = self._bareword_end(self.pos)
        word = self.text[self.pos : word_end].lower()
        if word == "exit":
            self.pos = word_end
            self.skip_blanks()
            code = None if self.at_separator() else self.word()
            return ExitAst(code, start, self.pos)
        if word in _KEYWORDS:
            raise _unsupported(f"the '{word}' keyword", start, word_end)
        return self.pipeline()

    def pipeline(self) -> PipelineAst:
        start = self.pos
        elements: list[CommandAst | ExprAst] = []
        while True:
            self.skip_blanks()
            if self.at_separator() or self.peek() == "|":
                raise ParseError(
                    "An empty pipe element is not allowed.",
                    "EmptyPipeElement",
                    self.pos,
                    self.pos + 1,
                )
            elements.append(self.element(first=not elements))
            self.skip_blanks()
            if self.peek() == "|" and self.peek(1) != "|":
                self.pos += 1
                continue
            return PipelineAst(elements, start, elements[-1].end)

    def element(self, first: bool) -> CommandAst | ExprAst:
        start = self.pos
        c = self.peek()
        is_literal = (
            c in SINGLE_QUOTES + DOUBLE_QUOTES
            or c == "$"
            or _NUMBER.fullmatch(self.text[start : self._bareword_end(start)])
        )
        if is_literal:
            if not first:
                raise ParseError(
                    "Expressions are only allowed as the first element of a pipeline.",
                    "ExpressionsMustBeFirstInPipeline",
                    start,
                    self._bareword_end(start),
                )
            value = self.argument()
            return ExprAst(value, start, value.end)
        if c in "&.":
            raise _unsupported(f"the '{c}' invocation operator", start, start + 1)
        if c in "@({[":
            raise _unsupported("expressions other than literals", start, start + 1)
        name_end = self._bareword_end(start)
        if name_end == start:
            raise self._unexpected()
        command = CommandAst(self.text[start:name_end], start, name_end, name_end)
        self.pos = name_end
        while True:
            self.skip_blanks()
            if self.at_separator() or self.peek() == "|":
                return command
            if self.peek() == "&":
                if self.peek(1) == "&":
                    raise self._unexpected()
                raise ParseError(
                    "The ampersand (&) character is not allowed. The & operator is reserved for future use; "
                    'wrap an ampersand in double quotation marks ("&") to pass it as part of a string.',
                    "AmpersandNotAllowed",
                    self.pos,
                    self.pos + 1,
                )
            command.elements.append(self.command_element())
            command.end = self.pos

    def command_element(self) -> ParamArg | Argument:
        start = self.pos
        if self.peek() in DASHES and (self.peek(1).isalpha() or self.peek(1) in "_?"):
            end = start + 1
            while (
                end < len(self.text)
                and self.text[end] not in _TERMINATORS
                and self.text[end] != ":"
            ):
                if self.text[end] in SINGLE_QUOTES + DOUBLE_QUOTES + "$`":
                    raise _unsupported("quoting inside a parameter name", end, end + 1)
                end += 1
            name = self.text[start + 1 : end]
            self.pos = end
            value: Argument | None = None
            if self.peek() == ":":
                self.pos += 1
                self.skip_blanks()
                if self.at_separator() or self.peek() == "|":
                    raise ParseError(
                        "Missing argument in parameter list.", "MissingArgument", start, self.pos
                    )
                value = self.argument()
            return ParamArg(name, value, start, self.pos)
        return self.argument()

    # -- arguments ---------------------------------------------------------------

    def argument(self) -> Argument:
        first = self.word()
        items = [first]
        while True:
            save = self.pos
            self.skip_blanks()
            if self.peek() != ",":
                self.pos = save
                break
            comma = self.pos
            self.pos += 1
            self.skip_blanks()
            if self.at_separator() or self.peek() in "|,":
                raise ParseError(
                    "Missing expression after ','.", "MissingExpressionAfterToken", comma, comma + 1
                )
            items.append(self.word())
        if len(items) == 1:
            return first
        return ArrayValue(items, first.start, items[-1].end)

    def word(self) -> Value:
        start = self.pos
        c = self.peek()
        if c == "$":
            end = self._variable_end(start + 1)
            name = self.text[start + 1 : end].lower()
            constants = {"true": True, "false": False, "null": None}
            if name in constants and (end >= len(self.text) or self.text[end] in _TERMINATORS):
                self.pos = end
                return Value(constants[name], start, end, quoted=True)
            raise _unsupported("variables and subexpressions", start, max(end, start + 1))
        if c == "@" and self.peek(1) == "{":
            return self._hashtable()
        if c in "@({}":
            raise _unsupported("expressions other than literals", start, start + 1)
        if c in ")":
            raise self._unexpected()
        if c in "<>":
            raise _unsupported("redirection", start, start + 1)
        parts: list[str] = []
        quoted = False
        while self.pos < len(self.text) and self.peek() not in _TERMINATORS:
            c = self.peek()
            if c in SINGLE_QUOTES:
                parts.append(self._single_quoted())
                quoted = True
            elif c in DOUBLE_QUOTES:
                parts.append(self._double_quoted())
                quoted = True
            elif c == "$":
                raise _unsupported("variables and subexpressions", self.pos, self.pos + 1)
            elif c == "`":
                if self.pos + 1 >= len(self.text):
                    self.pos += 1
                    break
                if self.peek(1) in "\r\n":
                    break
                parts.append(self.peek(1))
                quoted = True
                self.pos += 2
            else:
                parts.append(c)
                self.pos += 1
        text = "".join(parts)
        if not quoted:
            number = _number(text)
            if number is not None:
                return Value(number, start, self.pos)
        return Value(text, start, self.pos, quoted=quoted)

    def _hashtable(self) -> Value:
        """``@{ Name = literal; ... }``: a hashtable of literal values (keys without case)."""
        start = self.pos
        self.pos += 2
        table: dict[str, Any] = {}
        while True:
            while self.pos < len(self.text) and self.peek() in _WHITESPACE + ";\r\n":
                self.pos += 1
            if self.peek() == "}":
                self.pos += 1
                return Value(table, start, self.pos, quoted=True)
            key = _HASH_KEY.match(self.text, self.pos)
            if key is None:
                raise _unsupported("hashtable keys other than names", self.pos, self.pos + 1)
            self.pos = key.end()
            self.skip_blanks()
            if self.peek() != "=":
                raise ParseError(
                    "Missing '=' operator after key in hash literal.",
                    "MissingEqualsInHashLiteral",
                    self.pos,
                    self.pos + 1,
                )
            self.pos += 1
            self.skip_blanks()
            if self.pos >= len(self.text):
                raise ParseError(
                    "The hash literal was incomplete.", "IncompleteHashLiteral", start, self.pos
                )
            table[key.group(0)] = self.word().value

    def _single_quoted(self) -> str:
        start = self.pos
        self.pos += 1
        out: list[str] = []
        while self.pos < len(self.text):
            c = self.peek()
            if c in SINGLE_QUOTES:
                if self.peek(1) in SINGLE_QUOTES and self.peek(1):
                    out.append(c)
                    self.pos += 2
                    continue
                self.pos += 1
                return "".join(out)
            out.append(c)
            self.pos += 1
        raise ParseError(
            "The string is missing the terminator: '.",
            "TerminatorExpectedAtEndOfString",
            start,
            len(self.text),
        )

    def _double_quoted(self) -> str:
        start = self.pos
        self.pos += 1
        out: list[str] = []
        while self.pos < len(self.text):
            c = self.peek()
            if c in DOUBLE_QUOTES:
                if self.peek(1) in DOUBLE_QUOTES and self.peek(1):
                    out.append(c)
                    self.pos += 2
                    continue
                self.pos += 1
                return "".join(out)
            if c == "`" and self.pos + 1 < len(self.text):
                nxt = self.peek(1)
                out.append(_ESCAPES.get(nxt, nxt))
                self.pos += 2
                continue
            if c == "$" and (self.peek(1).isalnum() or self.peek(1) in "_{(:?^$"):
                raise _unsupported(
                    "variable expansion in double-quoted strings", self.pos, self.pos + 2
                )
            out.append(c)
            self.pos += 1
        raise ParseError(
            'The string is missing the terminator: ".',
            "TerminatorExpectedAtEndOfString",
            start,
            len(self.text),
        )

    def _bareword_end(self, i: int) -> int:
        while i < len(self.text) and self.text[i] not in _TERMINATORS:
            if self.text[i] in SINGLE_QUOTES + DOUBLE_QUOTES + "$`":
                break
            i += 1
        return i

    def _variable_end(self, i: int) -> int:
        while i < len(self.text) and (self.text[i].isalnum() or self.text[i] in "_:?"):
            i += 1
        return i


def _number(text: str) -> int | float | None:
    m = _NUMBER.fullmatch(text)
    if not m:
        return None
    value: int | float
    if m.group("hex"):
        value = int(m.group("hex"), 16)
    else:
        dec = m.group("dec")
        value = (
            float(dec)
            if any(ch in dec for ch in ".eE") or (m.group("suffix") or "").lower() == "d"
            else int(dec)
        )
    if m.group("mult"):
        value = value * _MULTIPLIERS[m.group("mult").lower()]
        if isinstance(value, float) and value.is_integer():
            value = int(value)
    return -value if m.group("sign") == "-" else value
