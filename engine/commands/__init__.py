"""The subcommands of runproc other than running a procedure, one module per group.

engine.cli imports a module here only when its command is named, so that starting runproc
(``--version``, ``validate``) does not pay for the others; common.py is what they share.
"""
