"""The conformance suite as this distribution's own tests (computed's pytest plugin).

``pytest`` here starts a private RabbitMQ and a worker running the driver
named in setup.cfg (``computed_driver``), then runs one test per check id.
"""


def test_conformance(conformance_check):
    conformance_check()
