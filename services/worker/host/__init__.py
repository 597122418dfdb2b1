"""The endpoint host: one pjsua2 Endpoint in a subprocess, driven over the protocol."""
