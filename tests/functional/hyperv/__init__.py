"""The Hyper-V driver's tests against the WinRM test server."""
