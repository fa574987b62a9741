"""Test helpers shipped with the package, for driver authors and the project's own tests.

* :class:`~computed.testing.broker.RabbitMQBroker`: a private RabbitMQ node on
  127.0.0.1 with its own ports and data in a temporary directory.
* :class:`~computed.testing.broker.RabbitMQCluster`: several such nodes
  (three by default) clustered, for failover tests.
* :class:`~computed.testing.postgres.PostgreSQLServer`: a private PostgreSQL
  cluster on 127.0.0.1, likewise.
* :func:`~computed.testing.tls.make_certificates`: a CA of the test's own
  with a server certificate for 127.0.0.1 and localhost, for a broker that
  speaks TLS only (``RabbitMQBroker(tls=...)``); imported from its module,
  since it needs ``cryptography``.
* :class:`~computed.testing.workers.WorkerProcess`: one ``computed`` worker
  process with its own config and log file.
* :class:`~computed.testing.notifications.NotificationCollector`: listens to
  the workers' notifications and waits for the ones a test expects.
* :class:`~computed.testing.proxy.SilentPort`: a TCP port in front of a
  broker that relays, or falls silent as a hung broker does, and resets
  the connections it kept silent when it relays again.
* :func:`~computed.testing.metrics.scrape`: the samples a worker's metrics
  endpoint serves, as Prometheus reads them.
* :func:`wait_until`: polls a condition until it holds, and fails saying
  what did not happen; for what a test can only look at, not wait on.
* :mod:`computed.testing.plugin`: the pytest plugin (entry point ``pytest11``)
  giving a driver's own repository a broker, a worker running its driver and
  the conformance suite as parametrized tests.

They need the server packages installed (``tools/bootstrap.sh`` installs them
on Debian) and work as root (switching to the ``rabbitmq``/``postgres`` users)
or as an ordinary user. ``computed.testing.libvirtd`` runs a private libvirtd.
"""

from __future__ import annotations

from computed.testing._procs import wait_until
from computed.testing.broker import RabbitMQBroker, RabbitMQCluster
from computed.testing.notifications import NotificationCollector
from computed.testing.postgres import PostgreSQLServer
from computed.testing.workers import WorkerProcess

__all__ = [
    "RabbitMQBroker",
    "RabbitMQCluster",
    "PostgreSQLServer",
    "WorkerProcess",
    "NotificationCollector",
    "wait_until",
]
