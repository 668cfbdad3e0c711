"""The optimizers optax keeps in ``optax.contrib``, each checked against its paper."""

# TEMPORARY (issue 17 in progress): every ``_*.py`` module's ``__all__`` is exported here;
# replaced by explicit imports when the modules land.
import importlib as _importlib
import pkgutil as _pkgutil

from gradxform.wrappers._plateau import ReduceLROnPlateauState, reduce_on_plateau

__all__ = ["ReduceLROnPlateauState", "reduce_on_plateau"]

for _info in _pkgutil.iter_modules(__path__):
    if _info.name.startswith("_"):
        _module = _importlib.import_module(f"{__name__}.{_info.name}")
        for _name in getattr(_module, "__all__", ()):
            globals()[_name] = getattr(_module, _name)
            __all__.append(_name)
__all__.sort()
