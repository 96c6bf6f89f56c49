"""The reference daemon: one exchnode ``Node`` per process, configured by one TOML file.

This package lives in the source tree next to ``exchnode`` and is deliberately
not installed: ``exchnode`` is the one importable package, and this is one
program built on its public API (nothing here imports a private name, and
nothing in ``exchnode`` imports from here).  Run it from the repository root
as ``python -m node <verb>``, or through the installed launcher
``exchnode node <verb>`` / ``exchnode send`` / ``exchnode receive``.

Modules:

* ``config``   node.toml: the schema, validation naming key and file, path resolution
* ``scaffold`` ``init``: a starter config, the operator token, and (given a CA) keys and certificate
* ``daemon``   ``run``: build the Node, serve, ready file, signals, graceful drain
* ``operator`` the local operator HTTP API (health, send, receive, ack, status)
* ``operator_services``, ``forms``, ``api``  the API's catalog and subscription endpoints
* ``operator_audit`` the API's audit endpoints (verify, records) and the audit log's JSON forms
* ``audit_offline``  the audit log read from a stopped node's store (``audit ... --offline``)
* ``inbox``    leases between the node's deliveries and operator clients
* ``client``   the operator API client used by ``send``/``receive`` and the demo
* ``logs``     structlog configuration (JSON lines on stderr)
* ``cli``      the verbs and their one-line error policy; ``cli_services`` (``catalog``,
  ``sub``) and ``cli_audit`` (``audit``)
"""
