"""The reference daemon: one exchnode ``Node`` per process, configured by one TOML file.

Its source is the repository's top-level ``node/`` folder; it is installed
with the library as ``exchnode.node`` (``pyproject.toml`` maps the one onto
the other), so one ``pip install`` gives an operator both, and no file in a
working directory can stand in for it.  It is one program built on the
library's public API: it imports only the packages' public names (and its
own modules, relatively), and nothing in the library imports it (both are
checked by ``tests/unit/test_layers.py``).  Run it as ``python -m
exchnode.node <verb>`` or through ``exchnode node <verb>`` / ``exchnode send``
/ ``exchnode receive``.

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
