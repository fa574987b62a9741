"""The libvirt driver's tests against a private libvirtd."""
