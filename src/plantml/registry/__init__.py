"""plantml.registry: model versions with lineage, signed bundles, stages per deployment target,
roles and approvals, a hash-chained signed audit trail, model cards, and an HTTP server with a
review page.

The library layer (:class:`plantml.registry.service.Registry`) enforces every rule; the CLI
(``plantml-registry``) and the HTTP server are thin over it. No torch is imported here.
"""

from plantml.registry.errors import NotFound, Refused, RegistryError
from plantml.registry.service import Registry

__all__ = ["NotFound", "Refused", "Registry", "RegistryError"]
