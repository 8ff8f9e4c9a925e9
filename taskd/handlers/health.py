"""Operations routes (CONTRACT §7): liveness, readiness, metrics.

Public on purpose: load balancers, systemd checks and Prometheus call them without a token, and
they tell nothing about any user.
"""

from __future__ import annotations

from taskd.handlers.base import BaseHandler, public
from taskd.metrics import CONTENT_TYPE, Metrics
from taskd.readiness import Readiness


@public
class HealthHandler(BaseHandler):
    """200 while the process runs and its event loop answers."""

    def get(self) -> None:
        self.send_json(b'{"status":"ok"}')


@public
class ReadyHandler(BaseHandler):
    """200 when the database answers and no migration is pending; else 503 saying which."""

    async def get(self) -> None:
        readiness: Readiness = self.settings["readiness"]
        await readiness.check()
        self.send_json(b'{"status":"ready"}')


@public
class MetricsHandler(BaseHandler):
    def get(self) -> None:
        metrics: Metrics = self.settings["metrics"]
        metrics.observe_pool(self.pool.get_stats())
        self.set_header("Content-Type", CONTENT_TYPE)
        self.finish(metrics.render())


ROUTES = [
    (r"/healthz", HealthHandler),
    (r"/readyz", ReadyHandler),
    (r"/metrics", MetricsHandler),
]
