"""Transports move bytes and run commands; what to run is decided elsewhere (as in Ansible).

``LocalTransport`` runs on this machine; the SSH transport (paramiko) runs on an inventory
host. The shell executor talks to either through ``run``.
"""
