"""reconciler: environments declared in git, reconciled through a typed lifecycle.

The public face: the domain model. Everything else is reached through the
``reconcile`` command or its modules.
"""

from reconciler.domain import AnyEnvironment, Environment, FailureContext, Phase, StateTypeError

__version__ = "0.1.0"

__all__ = ["AnyEnvironment", "Environment", "FailureContext", "Phase", "StateTypeError", "__version__"]
