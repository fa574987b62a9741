"""How powershell.exe reports errors on a redirected stderr: ``#< CLIXML`` documents.

When stderr is not a console, Windows PowerShell serialises its error, warning and
progress streams as CLIXML. An error record is first rendered the way the console
host prints it (message wrapped at the buffer width, ``At line:`` position,
CategoryInfo, FullyQualifiedErrorId) and each rendered line becomes one
``<S S="Error">`` element ending in ``_x000D__x000A_``.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

__all__ = ["ErrorRecord", "Position", "StderrWriter"]

_NS = "http://schemas.microsoft.com/powershell/2004/04"
_MAX_SOURCE = 69


@dataclass(frozen=True)
class Position:
    """Where an error points: the script text and a character range in it."""

    script: str
    start: int
    end: int

    def render(self) -> list[str]:
        line_no = self.script.count("\n", 0, self.start) + 1
        line_start = self.script.rfind("\n", 0, self.start) + 1
        line_end = self.script.find("\n", self.start)
        if line_end == -1:
            line_end = len(self.script)
        line = self.script[line_start:line_end].rstrip("\r").rstrip()
        col = self.start - line_start
        length = max(1, min(self.end, line_start + len(line)) - self.start)
        shown, offset = line, col
        if len(line) > _MAX_SOURCE + 4:
            begin = 0 if col + min(length, 20) <= _MAX_SOURCE else max(0, col - 20)
            shown = line[begin : begin + _MAX_SOURCE]
            offset = col - begin
            if begin:
                shown, offset = "... " + shown, offset + 4
            if begin + _MAX_SOURCE < len(line):
                shown += " ..."
            length = max(1, min(length, len(shown) - offset))
        return [
            f"At line:{line_no} char:{col + 1}",
            f"+ {shown}",
            "+ " + " " * offset + "~" * length,
        ]


@dataclass
class ErrorRecord:
    """The parts of a PowerShell ErrorRecord that its console rendering shows."""

    message: str
    fqid: str
    category: str
    reason: str
    activity: str = ""
    target: str = ""
    target_type: str = ""
    prefix: str = ""
    position: Position | None = None
    parse_error: bool = False

    def render(self, width: int | None) -> list[str]:
        lines: list[str] = []
        message_lines: list[str] = []
        for i, part in enumerate(self.message.split("\n")):
            text = f"{self.prefix} : {part}" if (i == 0 and self.prefix) else part
            message_lines.extend(_word_wrap(text, width))
        position = self.position.render() if self.position else []
        lines.extend(position + message_lines if self.parse_error else message_lines + position)
        target = f"{self.target}:{self.target_type}" if (self.target or self.target_type) else ":"
        info = f"    + CategoryInfo          : {self.category}: ({target}) [{self.activity}], {self.reason}"
        lines.extend(_hard_wrap(info, width))
        lines.extend(_hard_wrap(f"    + FullyQualifiedErrorId : {self.fqid}", width))
        lines.append(" ")
        return lines


def _word_wrap(text: str, width: int | None) -> list[str]:
    if width is None or len(text) < width:
        return [text]
    words = text.split(" ")
    lines: list[str] = []
    current = ""
    for word in words:
        candidate = f"{current} {word}" if current else word
        if current and len(candidate) > width - 1:
            lines.append(current + " ")
            current = word
        else:
            current = candidate
    lines.append(current)
    return [chunk for line in lines for chunk in _hard_wrap(line, width)]


def _hard_wrap(text: str, width: int | None) -> list[str]:
    if width is None or len(text) < width:
        return [text]
    limit = width - 2
    out = [text[:limit] + " "]
    rest = text[limit:]
    while rest:
        piece, rest = rest[: limit - 3], rest[limit - 3 :]
        out.append("   " + piece + (" " if rest else ""))
    return out


def _escape(text: str) -> str:
    text = text.replace("_x", "_x005F_x")
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    def control(m: re.Match[str]) -> str:
        return f"_x{ord(m.group(0)):04X}_"

    return re.sub(r"[\x00-\x1f\x7f]", control, text)


#: Messages a Windows host in another language would write (its error ids and
#: categories stay as they are, as on Windows): each error's text replaced.
LOCALIZED_MESSAGE = "Der Vorgang konnte nicht abgeschlossen werden (Fehler {n})."


class StderrWriter:
    """Collects what powershell.exe would serialise to a redirected stderr.

    :param messages: ``en-US``, the messages as the emulated cmdlets word
        them; ``de-DE``, every error message in another language, error ids and
        categories unchanged; ``none``, nothing on stderr at all (a server
        that sends none).
    """

    def __init__(self, width: int | None = 80, messages: str = "en-US") -> None:
        if messages not in ("en-US", "de-DE", "none"):
            raise ValueError(f"messages is en-US, de-DE or none, not {messages!r}")
        self.width = width
        self.messages = messages
        self._parts: list[str] = []
        self._progress_refs = 0

    def progress(self, activity: str) -> None:
        ref = self._progress_refs
        self._progress_refs += 1
        type_names = (
            '<TN RefId="0"><T>System.Management.Automation.PSCustomObject</T><T>System.Object</T></TN>'
            if ref == 0
            else '<TNRef RefId="0" />'
        )
        self._parts.append(
            f'<Obj S="progress" RefId="{ref}">{type_names}<MS><I64 N="SourceId">1</I64>'
            f'<PR N="Record"><AV>{_escape(activity)}</AV><AI>0</AI><Nil /><PI>-1</PI><PC>-1</PC>'
            "<T>Completed</T><SR>-1</SR><SD> </SD></PR></MS></Obj>"
        )

    def error(self, record: ErrorRecord) -> None:
        if self.messages == "de-DE":
            n = len(self._parts) + 1
            record = dataclasses.replace(record, message=LOCALIZED_MESSAGE.format(n=n))
        for line in record.render(self.width):
            self._parts.append(f'<S S="Error">{_escape(line + chr(13) + chr(10))}</S>')

    def warning(self, text: str) -> None:
        for line in _word_wrap(text, self.width):
            self._parts.append(f'<S S="warning">{_escape(line + chr(13) + chr(10))}</S>')

    def getvalue(self) -> bytes:
        if not self._parts or self.messages == "none":
            return b""
        doc = (
            f'#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="{_NS}">'
            + "".join(self._parts)
            + "</Objs>"
        )
        return doc.encode("utf-8")
