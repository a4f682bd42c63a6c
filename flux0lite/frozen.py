"""Immutable value classes without ``dataclasses``.

The settings and routing values (:class:`~flux0lite.Timeout`, :class:`~flux0lite.Retry`,
origins, proxies, routes) behave as frozen dataclasses do: compared, hashed and shown by their
fields, refusing assignment, copied and pickled whole. Importing ``dataclasses`` (it imports
``inspect``, ``ast``, ``dis`` and ``tokenize``) and generating each class's methods cost a
command-line call about a quarter of its start-up, which these plain methods avoid.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any, Tuple, TypeVar

    _V = TypeVar("_V", bound="Frozen")

__all__ = ["Frozen", "FrozenInstanceError"]


class FrozenInstanceError(AttributeError):
    """Assigning to (or deleting) a field of a frozen value."""


class Frozen:
    """A base for value classes.

    A subclass names its fields, in order, in ``_field_names`` (and makes them its
    ``__slots__``) and sets them in ``__init__`` with :meth:`_set`. Fields in ``_not_shown``
    are left out of ``repr`` (``field(repr=False)``), those in ``_not_compared`` out of ``==``
    and ``hash`` (``field(compare=False)``).
    """

    __slots__ = ()
    _field_names: "Tuple[str, ...]" = ()
    _not_shown: "Tuple[str, ...]" = ()
    _not_compared: "Tuple[str, ...]" = ()

    def _set(self, name: str, value: "Any") -> None:
        object.__setattr__(self, name, value)

    def _key(self) -> "Tuple[Any, ...]":
        return tuple(getattr(self, name) for name in self._field_names if name not in self._not_compared)

    def _replace(self: "_V", **changes: "Any") -> "_V":
        """A copy with ``changes``, checked by ``__init__`` again (``dataclasses.replace``)."""
        values = {name: getattr(self, name) for name in self._field_names}
        values.update(changes)
        return type(self)(**values)

    def __setattr__(self, name: str, value: "Any") -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, Frozen)
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{name}={getattr(self, name)!r}" for name in self._field_names if name not in self._not_shown
        )
        return f"{type(self).__qualname__}({shown})"

    def __reduce__(self) -> "Tuple[Any, ...]":
        # pickle and copy rebuild through __init__ (assignment is refused)
        return (type(self), tuple(getattr(self, name) for name in self._field_names))
