"""A subpackage that shares its name with its verb (``core.auto`` / ``auto``) is callable.

``from core import auto`` returns the ``core.auto`` package whenever it has been imported
(Python sets the package attribute after the submodule loads, overriding any
``core.__getattr__``), so the package itself forwards calls to the verb: ``auto(model, data,
...)`` works as documented, and ``core.auto.propose`` and ``from core.auto import X`` keep
working too.
"""

from __future__ import annotations

import inspect
import sys
import types
from typing import Any, Callable


def make_package_callable(module_name: str, verb: Callable[..., Any]) -> None:
    """Calling the package ``module_name`` calls ``verb`` (same signature for ``inspect``)."""

    class CallablePackage(types.ModuleType):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return verb(*args, **kwargs)

    CallablePackage.__doc__ = verb.__doc__
    module = sys.modules[module_name]
    module.__class__ = CallablePackage
    module.__signature__ = inspect.signature(verb)
