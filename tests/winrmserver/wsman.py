"""WS-Management (WinRS) for the ``windows/shell/cmd`` resource: shells and commands.

Request and response shapes follow MS-WSMV as recorded from real hosts in pypsrp's
test responses: Create answers ``x:ResourceCreated`` with the ShellId selector and an
``rsp:Shell`` description; Command answers ``rsp:CommandId``; Receive answers base64
``rsp:Stream`` chunks, the ``End="true"`` markers and ``rsp:CommandState`` with its
``rsp:ExitCode`` once done; Signal and Delete answer empty bodies. Failures are SOAP
faults (HTTP 500) carrying an ``f:WSManFault`` with its numeric code.
"""

from __future__ import annotations

import base64
import threading
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

from .hyperv import HyperVHost
from .powershell import ShellOptions, run_command_line

__all__ = ["WSManFault", "WSManService"]

NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "x": "http://schemas.xmlsoap.org/ws/2004/09/transfer",
    "w": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
    "p": "http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd",
    "rsp": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
}
_SHELL_URI = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
CMD_RESOURCE = _SHELL_URI + "/cmd"
_ACTIONS = {
    "http://schemas.xmlsoap.org/ws/2004/09/transfer/Create": "create",
    "http://schemas.xmlsoap.org/ws/2004/09/transfer/Delete": "delete",
    _SHELL_URI + "/Command": "command",
    _SHELL_URI + "/Receive": "receive",
    _SHELL_URI + "/Signal": "signal",
    _SHELL_URI + "/Send": "send",
}
_ANONYMOUS = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"
_ENVELOPE_NS = " ".join(f'xmlns:{k}="{v}"' for k, v in NS.items())
OPERATION_TIMEOUT_CODE = 2150858793
SHELL_NOT_FOUND_CODE = 2150858843


class WSManFault(Exception):
    """A SOAP fault as WinRM sends it (always with HTTP status 500)."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        subcode: str,
        *,
        sender: bool = True,
        detail: str = "",
    ):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.subcode = subcode
        self.sender = sender
        self.detail = detail


@dataclass
class _Command:
    id: str
    stdout: bytes
    stderr: bytes
    exit_code: int
    timeouts_left: int = 0


@dataclass
class _Shell:
    id: str
    owner: str
    commands: dict[str, _Command] = field(default_factory=dict)


def _shell_not_found(shell_id: str) -> WSManFault:
    return WSManFault(
        SHELL_NOT_FOUND_CODE,
        "The WS-Management service cannot process the request because the request contained invalid selectors "
        "for the resource. ",
        f"The request for the Windows Remote Shell with ShellId {shell_id} failed because the shell was not found "
        "on the server. Possible causes are: the specified ShellId is incorrect or the shell no longer exists on "
        "the server. Provide the correct ShellId or create a new shell and retry the operation. ",
        "w:InvalidSelectors",
    )


def _command_not_found() -> WSManFault:
    return WSManFault(
        SHELL_NOT_FOUND_CODE,
        "The WS-Management service cannot process the request because the request contained invalid selectors "
        "for the resource. ",
        "The Windows Remote Shell received a request to perform an operation on a command identifier that does not "
        "exist. Either the command has completed execution or the client specified an invalid command identifier. ",
        "w:InvalidSelectors",
        detail="http://schemas.dmtf.org/wbem/wsman/1/wsman/faultDetail/UnexpectedSelectors",
    )


def _invalid(message: str) -> WSManFault:
    return WSManFault(87, message, message, "w:InvalidParameter")


class WSManService:
    """The WinRS endpoint of one emulated host: shells per user, commands per shell."""

    def __init__(
        self,
        host: HyperVHost,
        options: ShellOptions,
        *,
        address: str = "http://127.0.0.1:5985/wsman",
        max_shells_per_user: int = 30,
        receive_chunk_bytes: int = 64 * 1024,
        receive_timeouts: int = 0,
    ) -> None:
        self.host = host
        self.options = options
        self.address = address
        self.max_shells_per_user = max_shells_per_user
        self.receive_chunk_bytes = receive_chunk_bytes
        self.receive_timeouts = receive_timeouts
        self._shells: dict[str, _Shell] = {}
        self._lock = threading.Lock()

    def open_shells(self) -> int:
        with self._lock:
            return len(self._shells)

    def handle(self, body: bytes, user: str) -> tuple[int, bytes]:
        """Process one SOAP envelope; returns the HTTP status and the response XML."""
        message_id = ""
        try:
            try:
                root = ET.fromstring(body)
            except ET.ParseError as exc:
                raise _invalid(
                    f"The WS-Management service cannot process the request. The request is not valid XML: {exc}."
                ) from None
            header = root.find("s:Header", NS)
            if header is None or root.find("s:Body", NS) is None:
                raise _invalid(
                    "The WS-Management service cannot process the request. The SOAP envelope is incomplete."
                )
            message_id = header.findtext("a:MessageID", "", NS)
            action_uri = header.findtext("a:Action", "", NS).strip()
            action = _ACTIONS.get(action_uri)
            if action is None:
                raise WSManFault(
                    2150858770,
                    "The WS-Management service cannot process the request because the action is not supported.",
                    f"The action {action_uri} is not supported by the Windows Remote Shell.",
                    "a:ActionNotSupported",
                )
            resource = header.findtext("w:ResourceURI", "", NS).strip()
            if resource != CMD_RESOURCE:
                raise WSManFault(
                    2150858770,
                    "The WS-Management service cannot process the request. The resource URI is not supported.",
                    f"The WS-Management service cannot process the request. The resource URI ({resource}) was not "
                    "found in the WS-Management catalog.",
                    "w:DestinationUnreachable",
                )
            response_action, payload = getattr(self, "_" + action)(root, header, user)
            return 200, self._envelope(response_action, message_id, payload)
        except WSManFault as fault:
            return 500, self._fault(fault, message_id)

    # -- actions -------------------------------------------------------------------

    def _create(self, root: ET.Element, header: ET.Element, user: str) -> tuple[str, str]:
        shell_id = str(uuid.uuid4()).upper()
        with self._lock:
            owned = sum(1 for s in self._shells.values() if s.owner == user)
            if owned >= self.max_shells_per_user:
                message = (
                    "The WS-Management service cannot process the request. This user is allowed a maximum number of "
                    f"{self.max_shells_per_user} concurrent shells, which has been exceeded. Close existing shells or "
                    "raise the quota for this user. "
                )
                raise WSManFault(2150859174, message, message, "w:QuotaLimit", sender=False)
            self._shells[shell_id] = _Shell(shell_id, user)
        streams_in = root.findtext("s:Body/rsp:Shell/rsp:InputStreams", "stdin", NS)
        streams_out = root.findtext("s:Body/rsp:Shell/rsp:OutputStreams", "stdout stderr", NS)
        payload = (
            f"<x:ResourceCreated><a:Address>{escape(self.address)}</a:Address><a:ReferenceParameters>"
            f"<w:ResourceURI>{CMD_RESOURCE}</w:ResourceURI><w:SelectorSet>"
            f'<w:Selector Name="ShellId">{shell_id}</w:Selector></w:SelectorSet></a:ReferenceParameters>'
            f'</x:ResourceCreated><rsp:Shell xmlns:rsp="{NS["rsp"]}"><rsp:ShellId>{shell_id}</rsp:ShellId>'
            f"<rsp:ResourceUri>{CMD_RESOURCE}</rsp:ResourceUri><rsp:Owner>{escape(user)}</rsp:Owner>"
            "<rsp:ClientIP>127.0.0.1</rsp:ClientIP><rsp:IdleTimeOut>PT7200.000S</rsp:IdleTimeOut>"
            f"<rsp:InputStreams>{escape(streams_in)}</rsp:InputStreams>"
            f"<rsp:OutputStreams>{escape(streams_out)}</rsp:OutputStreams>"
            "<rsp:ShellRunTime>P0DT0H0M0S</rsp:ShellRunTime><rsp:ShellInactivity>P0DT0H0M0S</rsp:ShellInactivity>"
            "</rsp:Shell>"
        )
        return "http://schemas.xmlsoap.org/ws/2004/09/transfer/CreateResponse", payload

    def _shell(self, header: ET.Element, user: str) -> _Shell:
        shell_id = ""
        for selector in header.findall("w:SelectorSet/w:Selector", NS):
            if selector.get("Name") == "ShellId":
                shell_id = (selector.text or "").strip()
        with self._lock:
            shell = self._shells.get(shell_id.upper())
        if shell is None or shell.owner != user:
            raise _shell_not_found(shell_id)
        return shell

    def _delete(self, root: ET.Element, header: ET.Element, user: str) -> tuple[str, str]:
        shell = self._shell(header, user)
        with self._lock:
            self._shells.pop(shell.id, None)
        return "http://schemas.xmlsoap.org/ws/2004/09/transfer/DeleteResponse", ""

    def _command(self, root: ET.Element, header: ET.Element, user: str) -> tuple[str, str]:
        shell = self._shell(header, user)
        line = root.find("s:Body/rsp:CommandLine", NS)
        if line is None:
            raise _invalid(
                "The WS-Management service cannot process the request. The rsp:CommandLine is missing."
            )
        command = (line.findtext("rsp:Command", "", NS) or "").strip()
        arguments = [a.text or "" for a in line.findall("rsp:Arguments", NS)]
        command_id = (line.get("CommandId") or str(uuid.uuid4())).upper()
        result = run_command_line(self.host, command, arguments, self.options)
        shell.commands[command_id] = _Command(
            command_id,
            result.stdout,
            result.stderr,
            result.exit_code,
            timeouts_left=self.receive_timeouts,
        )
        payload = f"<rsp:CommandResponse><rsp:CommandId>{command_id}</rsp:CommandId></rsp:CommandResponse>"
        return _SHELL_URI + "/CommandResponse", payload

    def _find_command(self, shell: _Shell, element: ET.Element | None) -> _Command:
        command_id = (element.get("CommandId") or "").upper() if element is not None else ""
        command = shell.commands.get(command_id)
        if command is None:
            raise _command_not_found()
        return command

    def _receive(self, root: ET.Element, header: ET.Element, user: str) -> tuple[str, str]:
        shell = self._shell(header, user)
        command = self._find_command(shell, root.find("s:Body/rsp:Receive/rsp:DesiredStream", NS))
        if command.timeouts_left > 0:
            command.timeouts_left -= 1
            raise WSManFault(
                OPERATION_TIMEOUT_CODE,
                "The WS-Management service cannot complete the operation within the time specified in "
                "OperationTimeout.  ",
                "The WS-Management service cannot complete the operation within the time specified in "
                "OperationTimeout.  ",
                "w:TimedOut",
                sender=False,
            )
        parts: list[str] = []
        chunk = self.receive_chunk_bytes
        for name in ("stdout", "stderr"):
            data: bytes = getattr(command, name)
            if data:
                parts.append(
                    f'<rsp:Stream Name="{name}" CommandId="{command.id}">'
                    f"{base64.b64encode(data[:chunk]).decode('ascii')}</rsp:Stream>"
                )
                setattr(command, name, data[chunk:])
        done = not command.stdout and not command.stderr
        state = f"{_SHELL_URI}/CommandState/{'Done' if done else 'Running'}"
        if done:
            for name in ("stdout", "stderr"):
                parts.append(
                    f'<rsp:Stream Name="{name}" CommandId="{command.id}" End="true"></rsp:Stream>'
                )
            parts.append(
                f'<rsp:CommandState CommandId="{command.id}" State="{state}">'
                f"<rsp:ExitCode>{command.exit_code}</rsp:ExitCode></rsp:CommandState>"
            )
        else:
            parts.append(f'<rsp:CommandState CommandId="{command.id}" State="{state}"/>')
        return _SHELL_URI + "/ReceiveResponse", "<rsp:ReceiveResponse>" + "".join(
            parts
        ) + "</rsp:ReceiveResponse>"

    def _signal(self, root: ET.Element, header: ET.Element, user: str) -> tuple[str, str]:
        shell = self._shell(header, user)
        signal = root.find("s:Body/rsp:Signal", NS)
        command = self._find_command(shell, signal)
        code = (signal.findtext("rsp:Code", "", NS) if signal is not None else "").strip()
        if code.endswith(("/signal/terminate", "/signal/ctrl_c", "/signal/ctrl_break")):
            shell.commands.pop(command.id, None)
        return _SHELL_URI + "/SignalResponse", "<rsp:SignalResponse/>"

    def _send(self, root: ET.Element, header: ET.Element, user: str) -> tuple[str, str]:
        shell = self._shell(header, user)
        self._find_command(shell, root.find("s:Body/rsp:Send/rsp:Stream", NS))
        return _SHELL_URI + "/SendResponse", "<rsp:SendResponse/>"

    # -- envelopes -------------------------------------------------------------------

    def _header(self, action: str, relates_to: str) -> str:
        relates = f"<a:RelatesTo>{escape(relates_to)}</a:RelatesTo>" if relates_to else ""
        return (
            f"<s:Header><a:Action>{action}</a:Action><a:MessageID>uuid:{str(uuid.uuid4()).upper()}</a:MessageID>"
            f"<a:To>{_ANONYMOUS}</a:To>{relates}</s:Header>"
        )

    def _envelope(self, action: str, relates_to: str, payload: str) -> bytes:
        header = self._header(action, relates_to)
        text = f'<s:Envelope xml:lang="en-US" {_ENVELOPE_NS}>{header}<s:Body>{payload}</s:Body></s:Envelope>'
        return text.encode("utf-8")

    def _fault(self, fault: WSManFault, relates_to: str) -> bytes:
        detail = f"<w:FaultDetail>{fault.detail}</w:FaultDetail>" if fault.detail else ""
        body = (
            f"<s:Fault><s:Code><s:Value>{'s:Sender' if fault.sender else 's:Receiver'}</s:Value><s:Subcode>"
            f"<s:Value>{fault.subcode}</s:Value></s:Subcode></s:Code><s:Reason>"
            f'<s:Text xml:lang="en-US">{escape(fault.reason)}</s:Text></s:Reason><s:Detail>{detail}'
            f'<f:WSManFault xmlns:f="http://schemas.microsoft.com/wbem/wsman/1/wsmanfault" Code="{fault.code}" '
            f'Machine="{escape(self.host.name)}"><f:Message>{escape(fault.message)}</f:Message></f:WSManFault>'
            "</s:Detail></s:Fault>"
        )
        return self._envelope("http://schemas.dmtf.org/wbem/wsman/1/wsman/fault", relates_to, body)
