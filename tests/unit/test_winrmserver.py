"""The WinRM test server, driven only through unmodified pywinrm over real HTTP(S).

Every test talks WinRM to a server running in a thread (or, for the CLI, in a
subprocess): NTLM with message sealing over HTTP, Basic or NTLM over HTTPS.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

winrm = pytest.importorskip("winrm")
pytest.importorskip("spnego")

from winrm.exceptions import InvalidCredentialsError, WSManFaultError  # noqa: E402

import tests.winrmserver as winrmserver  # noqa: E402
from tests.winrmserver import (  # noqa: E402
    ControllerType,
    GiB,
    HyperVHost,
    VMState,
    WinRMTestServer,
    make_self_signed_cert,
)

pytestmark = pytest.mark.hyperv

USER, PASSWORD = "hvadmin", "S3cret-pass"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def server() -> Iterator[WinRMTestServer]:
    with WinRMTestServer(
        users={USER: PASSWORD}, hosts=[HyperVHost("HV01", memory_capacity=8 * GiB)]
    ) as srv:
        yield srv


@pytest.fixture
def host(server: WinRMTestServer) -> HyperVHost:
    return server.host()


def session(url: str, **kw: object) -> winrm.Session:
    return winrm.Session(url, auth=(USER, PASSWORD), transport="ntlm", **kw)


def ps(srv: WinRMTestServer, script: str) -> tuple[int, str, str]:
    result = session(srv.url).run_ps(script)
    return result.status_code, result.std_out.decode("cp437"), result.std_err.decode("utf-8")


def unwrapped(stderr: str) -> str:
    """Undo the 80-column console wrapping in a cleaned error message."""
    return stderr.replace(" \n   ", "").replace(" \n", " ")


def vm_json(srv: WinRMTestServer, name: str) -> dict[str, object]:
    code, out, err = ps(srv, f"Get-VM -Name '{name}' | ConvertTo-Json")
    assert code == 0, err
    data = json.loads(out)
    assert isinstance(data, dict)
    return data


# -- package surface -------------------------------------------------------------------


def test_exported_names() -> None:
    assert sorted(winrmserver.__all__) == sorted(
        [
            "ControllerType",
            "GiB",
            "HyperVHost",
            "MiB",
            "VMState",
            "VhdFormat",
            "VhdType",
            "VirtualMachine",
            "WinRMTestServer",
            "make_self_signed_cert",
        ]
    )


# -- authentication and transport ------------------------------------------------------------


def test_wrong_password_and_unknown_user_are_rejected(server: WinRMTestServer) -> None:
    for user, password in ((USER, "wrong"), ("nobody", PASSWORD)):
        bad = winrm.Session(server.url, auth=(user, password), transport="ntlm")
        with pytest.raises(InvalidCredentialsError):
            bad.run_ps("Get-VM")
    assert server.open_shells() == 0


def test_ntlm_over_http_seals_every_soap_message(server: WinRMTestServer) -> None:
    code, out, _ = ps(
        server, "New-VM -Name 'sealed-vm-7f3a' | Select-Object -Property Name | ConvertTo-Json"
    )
    assert code == 0 and json.loads(out) == {"Name": "sealed-vm-7f3a"}
    soap = [r for r in server.wire_log if r.body]
    assert len(soap) == 5  # Create, Command, Receive, Signal, Delete
    for record in soap:
        assert record.content_type.startswith("multipart/encrypted;")
        assert 'protocol="application/HTTP-SPNEGO-session-encrypted"' in record.content_type
        assert b"Envelope" not in record.body and b"powershell" not in record.body
        assert record.status == 200 and record.user == USER


def test_plaintext_soap_is_refused_under_ntlm_over_http(
    server: WinRMTestServer, host: HyperVHost
) -> None:
    plain = session(server.url, message_encryption="never")
    with pytest.raises(InvalidCredentialsError):
        plain.run_ps("New-VM -Name 'should-not-exist'")
    refused = [r for r in server.wire_log if r.body and r.authorization == "Negotiate"]
    assert refused and all(r.status == 401 for r in refused)
    assert (
        refused[-1].content_type.startswith("application/soap+xml")
        and b"<env:Envelope" in refused[-1].body
    )
    assert host.vms() == [] and server.open_shells() == 0


def test_basic_is_refused_over_plain_http(server: WinRMTestServer) -> None:
    basic = winrm.Session(server.url, auth=(USER, PASSWORD), transport="basic")
    with pytest.raises(InvalidCredentialsError):
        basic.run_ps("Get-VM")


def test_https_with_self_signed_cert_accepts_basic_and_ntlm(tmp_path: Path) -> None:
    tls = make_self_signed_cert(tmp_path)
    with WinRMTestServer(users={USER: PASSWORD}, tls=tls) as srv:
        assert srv.url.startswith("https://127.0.0.1:")
        for transport in ("basic", "ntlm"):
            s = winrm.Session(
                srv.url, auth=(USER, PASSWORD), transport=transport, server_cert_validation="ignore"
            )
            result = s.run_ps(
                "Get-VMHost | Select-Object -Property Name | ConvertTo-Json -Compress"
            )
            assert (result.status_code, result.std_out) == (0, b'{"Name":"HV01"}\r\n')
        bad = winrm.Session(
            srv.url, auth=(USER, "nope"), transport="basic", server_cert_validation="ignore"
        )
        with pytest.raises(InvalidCredentialsError):
            bad.run_ps("Get-VM")
        assert all(
            r.content_type.startswith("application/soap+xml") for r in srv.wire_log if r.body
        )


# -- WinRS protocol ---------------------------------------------------------------------------


def test_unknown_shell_id_is_a_wsman_fault(server: WinRMTestServer) -> None:
    protocol = session(server.url).protocol
    with pytest.raises(WSManFaultError) as info:
        protocol.run_command(str(uuid.uuid4()).upper(), "ipconfig")
    assert info.value.code == 500
    assert info.value.wsman_fault_code == 2150858843
    assert "the shell was not found on the server" in info.value.response


def test_shells_are_deleted_and_per_user_quota_is_enforced(tmp_path: Path) -> None:
    with WinRMTestServer(users={USER: PASSWORD}, max_shells_per_user=2) as srv:
        protocol = session(srv.url).protocol
        shells = [protocol.open_shell(), protocol.open_shell()]
        assert srv.open_shells() == 2
        with pytest.raises(WSManFaultError) as info:
            protocol.open_shell()
        assert "maximum number of 2 concurrent shells" in info.value.response
        for shell_id in shells:
            protocol.close_shell(shell_id, close_session=False)
        assert srv.open_shells() == 0


def test_receive_timeouts_and_chunked_output_are_transparent_to_pywinrm() -> None:
    hv = HyperVHost("HV01")
    for i in range(30):
        hv.add_vm(f"vm-{i:02d}")
    with WinRMTestServer(
        users={USER: PASSWORD}, hosts=hv, receive_timeouts=2, receive_chunk_bytes=512
    ) as srv:
        code, out, _ = ps(srv, "Get-VM | ConvertTo-Json")
    assert code == 0
    assert [vm["Name"] for vm in json.loads(out)] == [f"vm-{i:02d}" for i in range(30)]


def test_non_powershell_commands_fail_like_cmd(server: WinRMTestServer) -> None:
    result = session(server.url).run_cmd("ipconfig", ["/all"])
    assert result.status_code == 1
    assert result.std_err.startswith(
        b"'ipconfig' is not recognized as an internal or external command"
    )


def test_cli_runs_as_a_subprocess_with_several_hosts() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.winrmserver",
            "--port",
            "0",
            "--user",
            USER,
            "--password",
            PASSWORD,
            "--host",
            "HVA",
            "--host",
            "HVB",
            "--switch",
            "public",
        ],  # fmt: skip
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first, *pairs = proc.stdout.readline().split()
        urls = dict(pair.split("=", 1) for pair in pairs)
        assert first == urls["HVA"] and urls["HVA"] != urls["HVB"]
        s_a, s_b = session(urls["HVA"]), session(urls["HVB"])
        assert s_a.run_ps("New-VM -Name 'only-on-a' | Out-Null").status_code == 0
        assert s_a.run_ps(
            "Get-VM | Select-Object -Property Name | ConvertTo-Json -Compress"
        ).std_out == (b'{"Name":"only-on-a"}\r\n')
        assert s_b.run_ps("Get-VM | ConvertTo-Json").std_out == b""
        assert (
            b'"ComputerName":"HVB"' in s_b.run_ps("Get-VMHost | ConvertTo-Json -Compress").std_out
        )
        # --switch gives every host the switches an administrator made, and only those.
        for s in (s_a, s_b):
            switches = s.run_ps("Get-VMSwitch | Select-Object -Property Name | ConvertTo-Json")
            assert json.loads(switches.std_out) == {"Name": "public"}
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# -- output shapes -------------------------------------------------------------------------------


def test_get_vm_gives_nothing_one_object_or_an_array(
    server: WinRMTestServer, host: HyperVHost
) -> None:
    assert ps(server, "Get-VM | ConvertTo-Json") == (0, "", ps(server, "Get-VM")[2])
    host.add_vm("alpha")
    assert isinstance(json.loads(ps(server, "Get-VM | ConvertTo-Json")[1]), dict)
    host.add_vm("beta")
    names = [vm["Name"] for vm in json.loads(ps(server, "Get-VM | ConvertTo-Json")[1])]
    assert names == ["alpha", "beta"]


def test_convert_to_json_uses_powershell_5_layout(
    server: WinRMTestServer, host: HyperVHost
) -> None:
    host.add_vm("layout", notes="a<b & 'c'>")
    code, out, _ = ps(
        server,
        "Get-VM -Name 'layout' | Select-Object -Property Name,State,Notes,HardDrives | ConvertTo-Json",
    )
    assert code == 0
    assert out == (
        "{\r\n"
        '    "Name":  "layout",\r\n'
        '    "State":  3,\r\n'
        '    "Notes":  "a\\u003cb \\u0026 \\u0027c\\u0027\\u003e",\r\n'
        '    "HardDrives":  [\r\n'
        "\r\n"
        "                   ]\r\n"
        "}\r\n"
    )
    assert json.loads(out)["Notes"] == "a<b & 'c'>"


def test_vm_object_fields(server: WinRMTestServer, host: HyperVHost) -> None:
    vm = host.add_vm("fields", memory_startup=2 * GiB, processor_count=4, generation=2)
    code, out, _ = ps(server, "Get-VM -Name 'fields' | ConvertTo-Json")
    assert '"CreationTime":  "\\/Date(' in out
    data = json.loads(out)
    assert data["Id"] == data["VMId"] == str(vm.id) == str(vm.id).lower()
    assert (data["Name"], data["VMName"], data["State"]) == ("fields", "fields", VMState.Off)
    assert (data["MemoryStartup"], data["ProcessorCount"], data["Generation"]) == (2 * GiB, 4, 2)
    assert re.fullmatch(r"/Date\(\d+\)/", data["CreationTime"])
    assert data["Uptime"]["TotalSeconds"] == 0 and data["ComputerName"] == "HV01"
    assert isinstance(data["NetworkAdapters"][0], dict) and data["NetworkAdapters"][0][
        "VMId"
    ] == str(vm.id)


def test_nested_objects_past_depth_become_type_names(
    server: WinRMTestServer, host: HyperVHost
) -> None:
    host.add_vm("one")
    adapter_type = "Microsoft.HyperV.PowerShell.VMNetworkAdapter"
    assert json.loads(ps(server, "Get-VM | ConvertTo-Json -Depth 1")[1])["NetworkAdapters"] == [
        adapter_type
    ]
    host.add_vm("two")
    many = json.loads(ps(server, "Get-VM | ConvertTo-Json")[1])
    assert [vm["NetworkAdapters"] for vm in many] == [[adapter_type], [adapter_type]]
    assert isinstance(many[0]["Uptime"], dict)


def test_get_vmhost(server: WinRMTestServer) -> None:
    data = json.loads(ps(server, "Get-VMHost | ConvertTo-Json")[1])
    assert (data["ComputerName"], data["LogicalProcessorCount"], data["MemoryCapacity"]) == (
        "HV01",
        8,
        8 * GiB,
    )


def test_successful_runs_still_carry_the_module_progress_record(server: WinRMTestServer) -> None:
    code, out, err = ps(server, "$ProgressPreference = 'SilentlyContinue'; Get-VMHost | Out-Null")
    assert (code, out) == (0, "")
    assert err.startswith("#< CLIXML") and "Preparing modules for first use." in err
    with WinRMTestServer(users={USER: PASSWORD}, module_progress=False) as quiet:
        assert ps(quiet, "Get-VMHost | Out-Null") == (0, "", "")


# -- cmdlets and state transitions ------------------------------------------------------------------


def test_new_vm_and_set_vm(server: WinRMTestServer, host: HyperVHost) -> None:
    code, out, err = ps(
        server,
        "New-VM -Name 'web-01' -MemoryStartupBytes 1GB -Generation 2 -NoVHD -Path 'D:\\VMs' | "
        "Select-Object -Property Name,Id,MemoryStartup,Generation,Path,State | ConvertTo-Json",
    )
    assert code == 0, err
    created = json.loads(out)
    assert (
        created["Name"] == "web-01"
        and created["MemoryStartup"] == GiB
        and created["Generation"] == 2
    )
    assert created["Path"] == "D:\\VMs" and created["State"] == VMState.Off
    assert host.vm(created["Id"]) is not None
    code, _, err = ps(
        server,
        "Set-VM -Name 'web-01' -ProcessorCount 4 -MemoryStartupBytes '2147483648' -Notes 'tenant=42'",
    )
    assert code == 0, err
    data = vm_json(server, "web-01")
    assert (data["ProcessorCount"], data["MemoryStartup"], data["Notes"]) == (
        4,
        2 * GiB,
        "tenant=42",
    )


@pytest.mark.parametrize(
    ("initial", "script", "final"),
    [
        (VMState.Off, "Start-VM -Name 'vm'", VMState.Running),
        (VMState.Saved, "Start-VM -Name 'vm'", VMState.Running),
        (VMState.Running, "Stop-VM -Name 'vm'", VMState.Off),
        (VMState.Running, "Stop-VM -Name 'vm' -Force", VMState.Off),
        (VMState.Running, "Stop-VM -Name 'vm' -TurnOff", VMState.Off),
        (VMState.Running, "Stop-VM -Name 'vm' -Save", VMState.Saved),
        (VMState.Saved, "Stop-VM -Name 'vm' -TurnOff", VMState.Off),
        (VMState.Running, "Suspend-VM -Name 'vm'", VMState.Paused),
        (VMState.Paused, "Resume-VM -Name 'vm'", VMState.Running),
        (VMState.Running, "Save-VM -Name 'vm'", VMState.Saved),
        (VMState.Paused, "Save-VM -Name 'vm'", VMState.Saved),
        (VMState.Running, "Restart-VM -Name 'vm' -Force", VMState.Running),
        (VMState.Running, "Restart-VM -Name 'vm' -Force -Type Reset", VMState.Running),
    ],
)
def test_valid_transitions(
    server: WinRMTestServer, host: HyperVHost, initial: VMState, script: str, final: VMState
) -> None:
    vm = host.add_vm("vm", state=initial)
    boots = vm.boot_count
    code, out, err = ps(server, script)
    assert (code, out) == (0, ""), err
    assert vm_json(server, "vm")["State"] == final == vm.state
    if script.startswith("Restart-VM"):
        assert vm.boot_count == boots + 1


@pytest.mark.parametrize(
    ("initial", "script", "cmdlet_class"),
    [
        (VMState.Off, "Suspend-VM -Name 'vm'", "SuspendVM"),
        (VMState.Off, "Resume-VM -Name 'vm'", "ResumeVM"),
        (VMState.Off, "Save-VM -Name 'vm'", "SaveVM"),
        (VMState.Off, "Restart-VM -Name 'vm' -Force", "RestartVM"),
        (VMState.Saved, "Stop-VM -Name 'vm'", "StopVM"),
        (VMState.Saved, "Suspend-VM -Name 'vm'", "SuspendVM"),
        (VMState.Running, "Remove-VM -Name 'vm' -Force", "RemoveVM"),
        (VMState.Running, "Set-VM -Name 'vm' -ProcessorCount 2", "SetVM"),
        (VMState.Starting, "Start-VM -Name 'vm'", "StartVM"),
        (VMState.Stopping, "Stop-VM -Name 'vm' -TurnOff", "StopVM"),
    ],
)
def test_invalid_transitions_fail_like_hyperv(
    server: WinRMTestServer, host: HyperVHost, initial: VMState, script: str, cmdlet_class: str
) -> None:
    vm = host.add_vm("vm", state=initial)
    code, out, err = ps(server, script)
    assert (code, out) == (1, "")
    text = unwrapped(err)
    cmdlet = script.split()[0]
    assert text.startswith(
        f"{cmdlet} : The operation cannot be performed while the virtual machine is in its current state."
    )
    assert (
        f"FullyQualifiedErrorId : InvalidState,Microsoft.HyperV.PowerShell.Commands.{cmdlet_class}"
        in text
    )
    assert vm.state == initial


def test_already_in_state_is_a_warning_not_an_error(
    server: WinRMTestServer, host: HyperVHost
) -> None:
    host.add_vm("vm")
    assert ps(server, "Stop-VM -Name 'vm'") == (
        0,
        "",
        "The virtual machine is already in the specified state.",
    )
    assert ps(server, "Stop-VM -Name 'vm' -WarningAction SilentlyContinue")[2].count("already") == 0


def test_remove_vm(server: WinRMTestServer, host: HyperVHost) -> None:
    host.add_vm("doomed", state=VMState.Saved)
    assert ps(server, "Remove-VM -Name 'doomed' -Force")[0] == 0
    assert host.vms() == []


def test_confirmation_prompts_cannot_be_answered(server: WinRMTestServer, host: HyperVHost) -> None:
    host.add_vm("keep")
    code, _, err = ps(server, "Remove-VM -Name 'keep'")
    assert code == 1 and "pass -Force" in unwrapped(err)
    assert ps(server, "Remove-VM -Name 'keep' -Confirm:$false")[0] == 0
    assert host.vms() == []


def test_start_fails_when_host_memory_is_exhausted(
    server: WinRMTestServer, host: HyperVHost
) -> None:
    host.add_vm("big", state=VMState.Running, memory_startup=6 * GiB)
    host.add_vm("next", memory_startup=4 * GiB)
    code, _, err = ps(server, "Start-VM -Name 'next'")
    assert code == 1 and "Ran out of memory (0x8007000E)" in unwrapped(err)
    assert vm_json(server, "next")["State"] == VMState.Off


def test_injected_failure(server: WinRMTestServer, host: HyperVHost) -> None:
    host.add_vm("flaky")
    host.fail_next("Start-VM", "'flaky' failed to start. (Virtual machine ID 1234)")
    code, _, err = ps(server, "Start-VM -Name 'flaky'")
    assert code == 1 and "failed to start" in err
    assert ps(server, "Start-VM -Name 'flaky'")[0] == 0


def test_addressing_by_id_through_the_pipeline(server: WinRMTestServer, host: HyperVHost) -> None:
    first = host.add_vm("twin")
    second = host.add_vm("twin")
    assert len(json.loads(ps(server, "Get-VM -Name 'twin' | ConvertTo-Json")[1])) == 2
    code, out, err = ps(
        server,
        f"Get-VM -Id '{second.id}' | Start-VM -Passthru | Select-Object -Property Id,State | ConvertTo-Json",
    )
    assert code == 0, err
    assert json.loads(out) == {"Id": str(second.id), "State": VMState.Running}
    assert first.state == VMState.Off
    missing = uuid.uuid4()
    code, _, err = ps(server, f"Get-VM -Id '{missing}'")
    assert (
        code == 1
        and f'Hyper-V was unable to find a virtual machine with id "{missing}".' in unwrapped(err)
    )


def test_wildcards_match_and_do_not_fail_when_empty(
    server: WinRMTestServer, host: HyperVHost
) -> None:
    host.add_vm("db-1")
    host.add_vm("db-2")
    host.add_vm("web-1")
    out = ps(
        server, "Get-VM -Name 'db-*' | Select-Object -Property Name | ConvertTo-Json -Compress"
    )[1]
    assert out == '[{"Name":"db-1"},{"Name":"db-2"}]\r\n'
    assert ps(server, "Get-VM -Name 'cache-*' | ConvertTo-Json")[:2] == (0, "")


# -- PowerShell errors ------------------------------------------------------------------------------------


def test_vm_not_found(server: WinRMTestServer) -> None:
    code, out, err = ps(server, "Get-VM -Name 'ghost' | ConvertTo-Json")
    assert (code, out) == (1, "")
    assert not err.startswith("#< CLIXML"), "pywinrm should have cleaned the CLIXML"
    text = unwrapped(err)
    assert text.startswith(
        'Get-VM : Hyper-V was unable to find a virtual machine with name "ghost".'
    )
    assert (
        "CategoryInfo          : InvalidArgument: (ghost:String) [Get-VM], VirtualizationException"
        in text
    )
    assert (
        "FullyQualifiedErrorId : InvalidParameter,Microsoft.HyperV.PowerShell.Commands.GetVM"
        in text
    )
    assert "Start-VM" in unwrapped(ps(server, "Start-VM -Name 'ghost'")[2]).split(" : ")[0]


def test_unknown_cmdlet_is_command_not_found(server: WinRMTestServer) -> None:
    code, _, err = ps(server, "Get-Process")
    text = unwrapped(err)
    assert code == 1
    assert text.startswith(
        "Get-Process : The term 'Get-Process' is not recognized as the name of a cmdlet"
    )
    assert "FullyQualifiedErrorId : CommandNotFoundException" in text


def test_parameter_binding_errors(server: WinRMTestServer) -> None:
    cases = {
        "Get-VM -Nmae 'x'": ("A parameter cannot be found that matches parameter name 'Nmae'.", "NamedParameterNotFound"),
        "Start-VM -Name": ("Missing an argument for parameter 'Name'.", "MissingArgument"),
        "Set-VM -N 'x'": ("the parameter name 'N' is ambiguous. Possible matches include: -Name -Notes", "AmbiguousParameter"),
        "Get-VM -Id 'not-a-guid'": ('Cannot convert value "not-a-guid" to type "System.Guid".', "CannotConvertArgumentNoMessage"),
        "New-VM -Name 'x' -Generation 3": ('The argument "3" does not belong to the set "1,2"', "ParameterArgumentValidationError"),
        "Get-VM 'a' 'b'": ("A positional parameter cannot be found that accepts argument 'b'.", "PositionalParameterNotFound"),
        f"Get-VM -Name 'a' -Id '{uuid.uuid4()}'": ("Parameter set cannot be resolved", "AmbiguousParameterSet"),
    }  # fmt: skip
    for script, (message, error_id) in cases.items():
        code, _, err = ps(server, script)
        text = unwrapped(err)
        assert code == 1, script
        assert message in text, (script, text)
        assert f"FullyQualifiedErrorId : {error_id}," in text, (script, text)
        assert "ParameterBindingException" in text or "ParameterBindingValidationException" in text


def test_parse_errors_run_nothing(server: WinRMTestServer, host: HyperVHost) -> None:
    code, _, err = ps(server, "New-VM -Name 'before' | Out-Null; Get-VM -Name 'unterminated")
    assert code == 1 and host.vms() == []
    assert (
        "The string is missing the terminator: '." in err
        and "TerminatorExpectedAtEndOfString" in err
    )
    code, _, err = ps(server, "Get-VM && New-VM -Name 'x'")
    assert code == 1 and "The token '&&' is not a valid statement separator in this version." in err


def test_unsupported_powershell_is_refused_before_running(
    server: WinRMTestServer, host: HyperVHost
) -> None:
    for script in (
        "New-VM -Name 'a' | Out-Null; $vm = Get-VM",
        "New-VM -Name 'a'; if ($true) { Get-VM }",
    ):
        code, _, err = ps(server, script)
        assert code == 1 and "EmulatorUnsupportedSyntax" in unwrapped(err)
    assert host.vms() == []


def test_error_action_preference_stop_ends_the_script(
    server: WinRMTestServer, host: HyperVHost
) -> None:
    code, _, _ = ps(
        server, "$ErrorActionPreference = 'Stop'; Get-VM -Name 'ghost'; New-VM -Name 'after'"
    )
    assert code == 1 and host.vms() == []
    code, _, _ = ps(server, "Get-VM -Name 'ghost' -ErrorAction Stop; New-VM -Name 'after'")
    assert code == 1 and host.vms() == []
    code, out, err = ps(server, "Get-VM -Name 'ghost'; New-VM -Name 'after' | Out-Null")
    assert (code, out) == (0, "") and "ghost" in err
    assert [vm.name for vm in host.vms()] == ["after"]


def test_exit_code_follows_the_last_statement_or_exit(server: WinRMTestServer) -> None:
    assert ps(server, "Get-VMHost | Out-Null; Get-VM -Name 'ghost'")[0] == 1
    code, _, err = ps(server, "Get-VM -Name 'ghost' -ErrorAction SilentlyContinue")
    assert code == 1 and "ghost" not in err
    assert ps(server, "Get-VMHost | Out-Null; exit 7")[0] == 7


# -- quoting and injection ---------------------------------------------------------------------------------


def test_quoted_injection_stays_data(server: WinRMTestServer, host: HyperVHost) -> None:
    victim = host.add_vm("victim")
    evil = "x'; Remove-VM -Name 'victim' -Force; $(Stop-Computer) `n; '"
    quoted = "'" + evil.replace("'", "''") + "'"
    code, out, err = ps(
        server, f"New-VM -Name {quoted} | Select-Object -Property Name | ConvertTo-Json -Compress"
    )
    assert code == 0, err
    assert json.loads(out) == {"Name": evil}
    assert host.vm(victim.id) is not None
    assert sorted(vm.name for vm in host.vms()) == sorted(["victim", evil])


def test_unquoted_injection_is_parsed_as_code(server: WinRMTestServer, host: HyperVHost) -> None:
    victim = host.add_vm("victim")
    code, _, err = ps(server, "Get-VM -Name x; Remove-VM -Name victim -Force")
    assert code == 0 and host.vm(victim.id) is None and "x" in err
    code, _, err = ps(server, "Get-VM -Name x; Stop-Computer -Force")
    assert code == 1 and "'Stop-Computer' is not recognized" in unwrapped(err)
    code, _, err = ps(server, "Get-VM -Name x$(Stop-Computer)")
    assert code == 1 and "EmulatorUnsupportedSyntax" in unwrapped(err)


def test_typographic_quotes_end_single_quoted_strings(
    server: WinRMTestServer, host: HyperVHost
) -> None:
    # PowerShell treats U+2019 like an ASCII quote: a driver must double it too.
    victim = host.add_vm("victim")
    ps(server, "Get-VM -Name 'x\u2019; Remove-VM -Name victim -Force; \u2019'")
    assert host.vm(victim.id) is None
    survivor = host.add_vm("survivor")
    code, _, err = ps(server, "Get-VM -Name 'x\u2019\u2019; Remove-VM -Name survivor -Force'")
    assert code == 1 and host.vm(survivor.id) is not None


# -- devices: VHD files, hard disk drives, network adapters, the iSCSI initiator -------------

BASE = "C:\\images\\base.vhdx"
DISK = "C:\\disks\\d.vhdx"


def json_of(srv: WinRMTestServer, script: str) -> object:
    code, out, err = ps(srv, script)
    assert code == 0, err
    return json.loads(out)


def error_of(srv: WinRMTestServer, script: str) -> str:
    code, out, err = ps(srv, script)
    assert (code, out) == (1, ""), err
    return unwrapped(err)


def test_new_get_and_resize_vhd(server: WinRMTestServer, host: HyperVHost) -> None:
    host.add_vhd(BASE, 2 * GiB)
    fields = (
        "Select-Object -Property Path,VhdFormat,VhdType,Size,ParentPath | ConvertTo-Json -Compress"
    )
    assert json_of(
        server, f"New-VHD -Path 'C:\\d\\fixed.vhd' -SizeBytes 1GB -Fixed | {fields}"
    ) == {
        "Path": "C:\\d\\fixed.vhd",
        "VhdFormat": 2,
        "VhdType": 2,
        "Size": GiB,
        "ParentPath": "",
    }
    child = json_of(server, f"New-VHD -Path '{DISK}' -ParentPath '{BASE}' -Differencing | {fields}")
    assert child == {
        "Path": DISK,
        "VhdFormat": 3,
        "VhdType": 4,
        "Size": 2 * GiB,
        "ParentPath": BASE,
    }
    assert (
        json_of(server, f"Resize-VHD -Path '{DISK}' -SizeBytes 3GB -Passthru | {fields}")["Size"]
        == 3 * GiB
    )
    assert json_of(server, f"Get-VHD -Path '{DISK}' | {fields}")["Size"] == 3 * GiB
    assert (
        json_of(server, f"New-VHD -Path 'C:\\d\\dyn.vhdx' -SizeBytes 1GB | {fields}")["VhdType"]
        == 3
    )

    assert "The file exists" in error_of(server, f"New-VHD -Path '{DISK}' -SizeBytes 1GB")
    assert "A .vhd file cannot be shrunk" in error_of(
        server, "Resize-VHD -Path 'C:\\d\\fixed.vhd' -SizeBytes 512MB"
    )
    assert "smaller than the minimum size" in error_of(
        server, f"Resize-VHD -Path '{DISK}' -SizeBytes 1GB"
    )
    missing = error_of(server, "Get-VHD -Path 'C:\\d\\nope.vhdx'")
    assert missing.startswith(
        "Get-VHD : 'C:\\d\\nope.vhdx' is not an existing virtual hard disk file."
    )
    assert "InvalidParameter,Microsoft.Vhd.PowerShell.Cmdlets.GetVHD" in missing
    assert "MissingMandatoryParameter" in error_of(server, "New-VHD -Path 'C:\\d\\x.vhdx'")


def test_hard_disk_drives_follow_the_generation_and_state_rules(
    server: WinRMTestServer, host: HyperVHost
) -> None:
    gen1 = host.add_vm("gen1", state=VMState.Running, generation=1)
    gen2 = host.add_vm("gen2", state=VMState.Running, generation=2)
    for name in ("a", "b", "c"):
        host.add_vhd(f"C:\\disks\\{name}.vhdx", GiB)

    # A running generation 1 VM takes disks on SCSI only; generation 2 has no IDE at all.
    refused = error_of(
        server, "Get-VM gen1 | Add-VMHardDiskDrive -ControllerType IDE -Path 'C:\\disks\\a.vhdx'"
    )
    assert "InvalidState,Microsoft.HyperV.PowerShell.Commands.AddVMHardDiskDrive" in refused
    assert "no IDE controller" in error_of(
        server, "Get-VM gen2 | Add-VMHardDiskDrive -ControllerType IDE -Path 'C:\\disks\\a.vhdx'"
    )
    added = json_of(
        server,
        "Get-VM gen1 | Add-VMHardDiskDrive -ControllerType SCSI -ControllerNumber 0 "
        "-ControllerLocation 3 -Path 'C:\\disks\\a.vhdx' -Passthru | Select-Object -Property "
        "ControllerType,ControllerNumber,ControllerLocation,Path | ConvertTo-Json -Compress",
    )
    assert added == {
        "ControllerType": 1,
        "ControllerNumber": 0,
        "ControllerLocation": 3,
        "Path": "C:\\disks\\a.vhdx",
    }
    assert "is already in use" in error_of(
        server,
        "Get-VM gen1 | Add-VMHardDiskDrive -ControllerType SCSI -ControllerNumber 0 -ControllerLocation 3 -Path 'C:\\disks\\b.vhdx'",
    )
    assert "being used by another process" in error_of(
        server, "Get-VM gen2 | Add-VMHardDiskDrive -ControllerType SCSI -Path 'C:\\disks\\a.vhdx'"
    )
    assert "cannot find the file specified" in error_of(
        server,
        "Get-VM gen2 | Add-VMHardDiskDrive -ControllerType SCSI -Path 'C:\\disks\\nope.vhdx'",
    )
    assert "unable to find a SCSI controller with number 1" in error_of(
        server,
        "Get-VM gen2 | Add-VMHardDiskDrive -ControllerType SCSI -ControllerNumber 1 -Path 'C:\\disks\\b.vhdx'",
    )
    assert "RemoveFileSystemItemIOError" in error_of(
        server, "Remove-Item -Path 'C:\\disks\\a.vhdx'"
    )

    # Off, generation 1 takes IDE too; a paused VM takes nothing.
    host.set_state(gen1, VMState.Off)
    ps(
        server,
        "Get-VM gen1 | Add-VMHardDiskDrive -ControllerType IDE -ControllerNumber 0 -ControllerLocation 0 -Path 'C:\\disks\\b.vhdx'",
    )
    assert [d.slot for d in gen1.drives] == [
        (ControllerType.SCSI, 0, 3),
        (ControllerType.IDE, 0, 0),
    ]
    host.set_state(gen2, VMState.Paused)
    assert "InvalidState" in error_of(
        server, "Get-VM gen2 | Add-VMHardDiskDrive -ControllerType SCSI -Path 'C:\\disks\\c.vhdx'"
    )

    code, _, err = ps(
        server,
        "Get-VM gen1 | Get-VMHardDiskDrive -ControllerType SCSI | Remove-VMHardDiskDrive\n"
        "Remove-Item -Path 'C:\\disks\\a.vhdx'",
    )
    assert code == 0, err
    assert [d.path for d in gen1.drives] == ["C:\\disks\\b.vhdx"]
    assert "C:\\disks\\a.vhdx" not in host.vhd_paths()
    assert "PathNotFound,Microsoft.PowerShell.Commands.RemoveItemCommand" in error_of(
        server, "Remove-Item -Path 'C:\\disks\\a.vhdx'"
    )


def test_online_resize_needs_a_vhdx_on_scsi(server: WinRMTestServer, host: HyperVHost) -> None:
    vm = host.add_vm("vm", state=VMState.Off, generation=1)
    host.add_vhd("C:\\disks\\ide.vhdx", GiB)
    host.add_vhd("C:\\disks\\scsi.vhdx", GiB)
    ps(
        server,
        "Get-VM vm | Add-VMHardDiskDrive -ControllerType IDE -ControllerNumber 0 -ControllerLocation 0 -Path 'C:\\disks\\ide.vhdx'",
    )
    ps(
        server,
        "Get-VM vm | Add-VMHardDiskDrive -ControllerType SCSI -ControllerNumber 0 -ControllerLocation 0 -Path 'C:\\disks\\scsi.vhdx'",
    )
    host.set_state(vm, VMState.Running)
    assert "InvalidState,Microsoft.Vhd.PowerShell.Cmdlets.ResizeVHD" in error_of(
        server, "Resize-VHD -Path 'C:\\disks\\ide.vhdx' -SizeBytes 2GB"
    )
    assert ps(server, "Resize-VHD -Path 'C:\\disks\\scsi.vhdx' -SizeBytes 2GB")[0] == 0
    assert host.vhd("C:\\disks\\scsi.vhdx").size == 2 * GiB


def test_network_adapters(server: WinRMTestServer, host: HyperVHost) -> None:
    select = "Select-Object -Property Name,SwitchName,MacAddress,DynamicMacAddressEnabled | ConvertTo-Json -Compress"
    assert json_of(
        server, f"New-VM -Name g2 -Generation 2 -NoVHD | Get-VMNetworkAdapter | {select}"
    ) == {
        "Name": "Network Adapter",
        "SwitchName": None,
        "MacAddress": "000000000000",
        "DynamicMacAddressEnabled": True,
    }
    added = json_of(
        server,
        "Get-VM g2 | Add-VMNetworkAdapter -SwitchName 'Default Switch' -Name 'port-1' "
        f"-StaticMacAddress '02aabbccddee' -Passthru | {select}",
    )
    assert added == {
        "Name": "port-1",
        "SwitchName": "Default Switch",
        "MacAddress": "02AABBCCDDEE",
        "DynamicMacAddressEnabled": False,
    }
    assert 'unable to find a virtual switch with name "nope"' in error_of(
        server, "Get-VM g2 | Add-VMNetworkAdapter -SwitchName 'nope' -Name 'port-2'"
    )
    assert "is not valid" in error_of(
        server, "Get-VM g2 | Add-VMNetworkAdapter -Name x -StaticMacAddress '02:aa'"
    )
    ps(server, "Start-VM g2")
    dynamic = json_of(
        server, f"Get-VM g2 | Get-VMNetworkAdapter -Name 'Network Adapter' | {select}"
    )
    assert dynamic["MacAddress"].startswith("00155D") and dynamic["MacAddress"] != "000000000000"
    # Generation 2 adds and removes adapters while running, generation 1 does not.
    code, _, err = ps(
        server, "Get-VM g2 | Get-VMNetworkAdapter -Name 'port-1' | Remove-VMNetworkAdapter"
    )
    assert code == 0, err
    assert [a.name for a in host.vms()[0].adapters] == ["Network Adapter"]
    host.add_vm("g1", state=VMState.Running, generation=1)
    refused = error_of(server, "Get-VM g1 | Add-VMNetworkAdapter -Name 'port-3'")
    assert (
        "generation 2 only" in refused
        and "InvalidState,Microsoft.HyperV.PowerShell.Commands.AddVMNetworkAdapter" in refused
    )
    assert "generation 2 only" in error_of(
        server, "Remove-VMNetworkAdapter -VMName g1 -Name 'Network Adapter'"
    )


def test_switches_and_the_iscsi_initiator(tmp_path: Path) -> None:
    host = HyperVHost(
        "HV07",
        switches=("external", "Default Switch"),
        iscsi_initiator="iqn.1991-05.com.microsoft:hv07.example.com",
    )
    with WinRMTestServer(users={USER: PASSWORD}, hosts=[host]) as srv:
        names = json_of(
            srv, "Get-VMSwitch | Select-Object -Property Name | ConvertTo-Json -Compress"
        )
        assert names == [{"Name": "external"}, {"Name": "Default Switch"}]
        assert json_of(
            srv,
            "Get-VMSwitch -Name 'ext*' | Select-Object -Property Name,SwitchType | ConvertTo-Json -Compress",
        ) == {
            "Name": "external",
            "SwitchType": 1,
        }
        assert json_of(
            srv,
            "Get-InitiatorPort -ConnectionType iSCSI | Select-Object -Property NodeAddress,ConnectionType | ConvertTo-Json -Compress",
        ) == {"NodeAddress": "iqn.1991-05.com.microsoft:hv07.example.com", "ConnectionType": 2}
        assert "CmdletizationQuery_NotFound_ConnectionType,Get-InitiatorPort" in error_of(
            srv, "Get-InitiatorPort -ConnectionType FibreChannel"
        )


# -- checkpoints, Convert-VHD, Move-Item, COM ports, VMConnect ------------------------------------


def vm_with_disk(host: HyperVHost, state: VMState = VMState.Running) -> object:
    host.add_vhd(BASE, 2 * GiB)
    vm = host.add_vm("cp", generation=2)
    host.new_vhd(DISK, None, winrmserver.VhdType.Differencing, BASE)
    host.add_drive(vm, DISK, ControllerType.SCSI, 0, 0)
    host.set_state(vm, state)
    return vm


def test_a_checkpoint_freezes_the_disks_and_its_removal_merges_them(
    server: WinRMTestServer, host: HyperVHost
) -> None:
    vm = vm_with_disk(host)
    taken = json_of(
        server,
        f"Get-VM -Id '{vm.id}' | Checkpoint-VM -SnapshotName 'before' -Passthru"
        " | Select-Object -Property Id,Name,VMName,HardDrives | ConvertTo-Json -Depth 3 -Compress",
    )
    assert (taken["Name"], taken["VMName"]) == ("before", "cp")
    assert [d["Path"] for d in taken["HardDrives"]] == [DISK]
    [drive] = vm.drives
    assert re.fullmatch(r"C:\\disks\\d_[0-9A-F-]{36}\.avhdx", drive.path)
    child = host.vhd(drive.path)
    assert (child.type, child.parent_path) == (winrmserver.VhdType.Differencing, DISK)
    listed = json_of(
        server, "Get-VMSnapshot -VMName 'cp' | Select-Object -Property Id | ConvertTo-Json"
    )
    assert listed == {"Id": taken["Id"]}
    code, _, err = ps(server, f"Get-VMSnapshot -Id '{taken['Id']}' | Remove-VMSnapshot")
    assert code == 0, err
    assert vm.checkpoints == [] and vm.drives[0].path == DISK
    assert host.vhd_paths() == sorted([BASE, DISK])


def test_checkpoints_by_name_and_what_is_missing(server: WinRMTestServer, host: HyperVHost) -> None:
    vm = vm_with_disk(host, VMState.Off)
    for name in ("a-1", "a-2", "b"):
        host.checkpoint(vm, name)
    # A pattern matching nothing is no error; a name matching nothing is.
    assert ps(server, "Get-VM 'cp' | Remove-VMSnapshot -Name 'zz*'")[0] == 0
    missing = error_of(server, "Get-VM 'cp' | Remove-VMSnapshot -Name 'zz'")
    assert 'unable to find a virtual machine checkpoint with name "zz"' in missing
    assert ps(server, "Remove-VMSnapshot -VMName 'cp' -Name 'a-*'")[0] == 0
    assert [c.name for c in vm.checkpoints] == ["b"]
    assert vm.drives[0].path.endswith(".avhdx")  # b's disk, now on the original
    assert host.vhd(vm.drives[0].path).parent_path == DISK
    absent = str(uuid.uuid4())
    assert f'with id "{absent}"' in error_of(server, f"Get-VMSnapshot -Id '{absent}'")
    assert "MissingMandatoryParameter" in error_of(server, "Get-VMSnapshot")
    host.set_state(vm, VMState.Stopping)
    assert "current state" in error_of(server, "Checkpoint-VM -Name 'cp'")


def test_convert_vhd_makes_a_standalone_copy_of_a_chain(
    server: WinRMTestServer, host: HyperVHost
) -> None:
    vm = vm_with_disk(host, VMState.Off)
    fields = "Select-Object -Property Path,VhdType,Size,ParentPath | ConvertTo-Json -Compress"
    # Attached, the disk is in use: conversion is an offline operation.
    assert "offline operation" in error_of(
        server, f"Convert-VHD -Path '{DISK}' -DestinationPath 'C:\\x\\copy.vhdx'"
    )
    host.checkpoint(vm, "frozen")
    made = json_of(
        server,
        f"Convert-VHD -Path '{DISK}' -DestinationPath 'C:\\x\\copy.vhdx' -VHDType Dynamic"
        f" -Passthru | {fields}",
    )
    assert made == {"Path": "C:\\x\\copy.vhdx", "VhdType": 3, "Size": 2 * GiB, "ParentPath": ""}
    assert "The file exists" in error_of(
        server, f"Convert-VHD -Path '{DISK}' -DestinationPath 'C:\\x\\copy.vhdx'"
    )
    assert "needs a parent" in error_of(
        server, f"Convert-VHD -Path '{DISK}' -DestinationPath 'C:\\x\\diff.vhdx'"
    )
    assert "NamedParameterNotFound" in error_of(
        server, f"Convert-VHD -Path '{DISK}' -DestinationPath 'C:\\x\\p.vhdx' -ParentPath '{BASE}'"
    )


def test_move_item_moves_a_vhd_file(server: WinRMTestServer, host: HyperVHost) -> None:
    host.add_vhd("C:\\x\\a.vhdx", GiB)
    host.add_vhd("C:\\x\\b.vhdx", GiB)
    assert ps(server, "Move-Item -Path 'C:\\x\\a.vhdx' -Destination 'C:\\y\\a.vhdx'")[0] == 0
    assert host.vhd_paths() == ["C:\\x\\b.vhdx", "C:\\y\\a.vhdx"]
    assert "already exists" in error_of(
        server, "Move-Item -Path 'C:\\x\\b.vhdx' -Destination 'C:\\y\\a.vhdx'"
    )
    assert "PathNotFound" in error_of(
        server, "Move-Item -Path 'C:\\x\\a.vhdx' -Destination 'C:\\z.vhdx'"
    )
    # Silenced, a missing file is no error that stops the script; nothing else is hidden.
    code, _, err = ps(
        server,
        "$ErrorActionPreference = 'Stop'\n"
        "Remove-Item -Path 'C:\\x\\gone.vhdx' -ErrorAction SilentlyContinue\n"
        "Remove-Item -Path 'C:\\x\\b.vhdx'",
    )
    assert (code, host.vhd_paths()) == (0, ["C:\\y\\a.vhdx"]), err


def test_com_ports_connect_to_named_pipes(server: WinRMTestServer, host: HyperVHost) -> None:
    vm = host.add_vm("serial")
    select = "Select-Object -Property Name,Path | ConvertTo-Json -Compress"
    assert json_of(server, f"Get-VMComPort -VMName 'serial' | {select}") == [
        {"Name": "COM 1", "Path": ""},
        {"Name": "COM 2", "Path": ""},
    ]
    code, _, err = ps(server, "Get-VM 'serial' | Set-VMComPort -Number 1 -Path '\\\\.\\pipe\\vm-1'")
    assert code == 0, err
    assert json_of(server, f"Get-VM 'serial' | Get-VMComPort -Number 1 | {select}") == {
        "Name": "COM 1",
        "Path": "\\\\.\\pipe\\vm-1",
    }
    assert "is not a named pipe" in error_of(
        server, "Set-VMComPort -VMName 'serial' -Number 2 -Path 'C:\\com2.txt'"
    )
    assert "COM port with number 3" in error_of(
        server, "Set-VMComPort -VMName 'serial' -Number 3 -Path '\\\\.\\pipe\\x'"
    )
    host.set_state(vm, VMState.Running)
    assert "current state" in error_of(
        server, "Set-VMComPort -VMName 'serial' -Number 2 -Path '\\\\.\\pipe\\x'"
    )
    assert vm.com_ports == ["\\\\.\\pipe\\vm-1", ""]


def test_the_vmconnect_port_is_read_through_wmi(server: WinRMTestServer, host: HyperVHost) -> None:
    query = "Get-CimInstance -Namespace 'root\\virtualization\\v2' -ClassName "
    select = " | Select-Object -Property ListenerPort | ConvertTo-Json -Compress"
    assert json_of(server, query + "Msvm_TerminalServiceSettingData" + select) == {
        "ListenerPort": 2179
    }
    host.vmconnect_port = 3389
    assert json_of(server, query + "msvm_terminalservicesettingdata" + select) == {
        "ListenerPort": 3389
    }
    assert "Invalid class" in error_of(server, query + "Msvm_ComputerSystem")
    assert "Invalid namespace" in error_of(
        server, "Get-CimInstance -Namespace 'root\\cimv2' -ClassName Win32_Process"
    )


# -- moving VMs between hosts --------------------------------------------------------------------


@pytest.fixture
def pair() -> Iterator[WinRMTestServer]:
    hosts = [HyperVHost(name, switches=("public",)) for name in ("HV01", "HV02")]
    for h in hosts:
        h.add_vhd("C:\\img\\base.vhdx", GiB)
    with WinRMTestServer(users={USER: PASSWORD}, hosts=hosts) as srv:
        yield srv


def ps_on(srv: WinRMTestServer, name: str, script: str) -> tuple[int, str, str]:
    result = session(srv.urls[name]).run_ps(script)
    return result.status_code, result.std_out.decode("cp437"), result.std_err.decode("utf-8")


def running_vm(srv: WinRMTestServer) -> str:
    code, _, err = ps_on(
        srv,
        "HV01",
        "$ErrorActionPreference = 'Stop'\n"
        "New-VM -Name mover -MemoryStartupBytes 512MB -Generation 2 -NoVHD -SwitchName public"
        " | Out-Null\n"
        "New-VHD -Path 'C:\\d\\mover.vhdx' -ParentPath 'C:\\img\\base.vhdx' -Differencing"
        " | Out-Null\n"
        "Get-VM -Name mover | Add-VMHardDiskDrive -Path 'C:\\d\\mover.vhdx'\n"
        "Get-VM -Name mover | Start-VM",
    )
    assert code == 0, err
    return str(srv.host("HV01").vms()[0].id)


_MOVE = "Move-VM -DestinationHost HV02 -IncludeStorage -DestinationStoragePath 'C:\\e'"


def test_move_vm_needs_migration_enabled_on_both_hosts(pair: WinRMTestServer) -> None:
    running_vm(pair)
    code, _, err = ps_on(pair, "HV01", f"Enable-VMMigration; Get-VM -Name mover | {_MOVE}")
    assert code == 1
    assert "'HV02' is not configured to perform live migrations" in unwrapped(err)
    assert "OperationFailed,Microsoft.HyperV.PowerShell.Commands.MoveVM" in unwrapped(err)
    assert [vm.name for vm in pair.host("HV01").vms()] == ["mover"]


def test_move_vm_carries_a_running_vm_and_its_local_disks(pair: WinRMTestServer) -> None:
    vm_id = running_vm(pair)
    ps_on(pair, "HV01", "Enable-VMMigration")
    code, out, err = ps_on(
        pair,
        "HV02",
        "Enable-VMMigration\n"
        f"Get-VM -ComputerName HV01 -Id '{vm_id}' | Move-VM -DestinationHost HV02 "
        "-IncludeStorage -DestinationStoragePath 'C:\\e' -Passthru"
        " | Select-Object Id,State,ComputerName | ConvertTo-Json -Compress",
    )
    assert code == 0, err
    assert json.loads(out) == {"Id": vm_id, "State": 2, "ComputerName": "HV02"}
    assert pair.host("HV01").vms() == [] and pair.host("HV01").vhd("C:\\d\\mover.vhdx") is None
    moved = pair.host("HV02").vhd("C:\\e\\mover.vhdx")
    assert moved is not None and moved.parent_path == "C:\\img\\base.vhdx"
    assert pair.host("HV02").vms()[0].drives[0].path == "C:\\e\\mover.vhdx"


def test_move_vm_refuses_a_destination_without_the_switch(pair: WinRMTestServer) -> None:
    running_vm(pair)
    pair.host("HV02").switches = ("other",)
    pair.host("HV02").migration_enabled = True
    code, _, err = ps_on(pair, "HV01", f"Enable-VMMigration; Get-VM -Name mover | {_MOVE}")
    assert code == 1 and "Could not find Ethernet switch 'public'" in unwrapped(err)


def test_a_migration_job_shows_progress_and_stops_when_asked(pair: WinRMTestServer) -> None:
    vm_id = running_vm(pair)
    source = pair.host("HV01")
    source.migration_enabled = pair.host("HV02").migration_enabled = True
    gate = source.migration_gate = threading.Event()
    outcome: list[tuple[int, str, str]] = []
    mover = threading.Thread(
        target=lambda: outcome.append(ps_on(pair, "HV01", f"Get-VM -Name mover | {_MOVE}"))
    )
    mover.start()
    query = (
        "Get-CimInstance -Namespace root\\virtualization\\v2 -ClassName Msvm_MigrationJob "
        f"-Filter \"VirtualSystemName = '{vm_id.upper()}'\""
    )
    jobs: list[dict[str, object]] = []
    while not jobs:  # the job appears once Move-VM has begun; it then waits at the gate
        code, out, err = ps_on(pair, "HV01", f"{query} | ConvertTo-Json -Compress")
        assert code == 0, err
        jobs = [json.loads(out)] if out.strip() else []
    assert jobs[0]["JobState"] == 4 and jobs[0]["MigrationType"] == 32771
    code, out, err = ps_on(
        pair,
        "HV01",
        f"{query} | Invoke-CimMethod -MethodName RequestStateChange "
        "-Arguments @{RequestedState=4} | Select-Object ReturnValue | ConvertTo-Json -Compress",
    )
    assert (code, json.loads(out)) == (0, {"ReturnValue": 0}), err
    gate.set()
    mover.join(30)
    code, _, err = outcome[0]
    assert code == 1 and "The operation was cancelled." in unwrapped(err)
    assert [vm.state for vm in source.vms()] == [VMState.Running]
    assert pair.host("HV02").vms() == []
    assert pair.host("HV02").vhd("C:\\e\\mover.vhdx") is not None  # left for the caller to remove


def test_set_vmprocessor_and_set_vmmemory_need_the_vm_off(pair: WinRMTestServer) -> None:
    running_vm(pair)
    code, _, err = ps_on(pair, "HV01", "Get-VM -Name mover | Set-VMProcessor -Count 2")
    assert code == 1 and "InvalidState" in unwrapped(err)
    code, out, err = ps_on(
        pair,
        "HV01",
        "Get-VM -Name mover | Stop-VM -Force\n"
        "Get-VM -Name mover | Set-VMProcessor -Count 2\n"
        "Get-VM -Name mover | Set-VMMemory -StartupBytes 1GB\n"
        "Get-VM -Name mover | Select-Object ProcessorCount,MemoryStartup | ConvertTo-Json -Compress",
    )
    assert code == 0, err
    assert json.loads(out) == {"ProcessorCount": 2, "MemoryStartup": GiB}


def test_free_memory(pair: WinRMTestServer) -> None:
    running_vm(pair)
    code, out, err = ps_on(
        pair,
        "HV01",
        "Get-CimInstance -ClassName Win32_OperatingSystem"
        " | Select-Object FreePhysicalMemory | ConvertTo-Json -Compress",
    )
    host = pair.host("HV01")
    expected = (host.memory_capacity - 512 * 1024 * 1024) // 1024
    assert (code, json.loads(out)) == (0, {"FreePhysicalMemory": expected}), err


def test_hashtables_take_literals_only(pair: WinRMTestServer) -> None:
    code, _, err = ps_on(pair, "HV01", "Invoke-CimMethod -MethodName X -Arguments @{A=$(1)}")
    assert code == 1 and "EmulatorUnsupportedSyntax" in unwrapped(err)
