"""Dataclasses read from and written to JSON by one reader and one writer per class.

A model is a frozen dataclass deriving from :class:`JsonModel` whose fields declare, once, in
``dataclasses.field(metadata=json_field(...))``, what JSON they hold: the kind, the key when it
differs from the attribute, whether the field is required, its value when null or missing (the
dataclass default unless ``absent`` says otherwise) and whether ``to_dict`` leaves it out when
it is None. A field named ``extra`` keeps the unknown JSON fields.
The reader and writer are made from these declarations on the class's first use.

The dataclass itself is made late too. ``@model(frozen=True)`` is ``@dataclass(frozen=True)``
whose generated methods (``__init__``, ``__repr__``, ``__eq__``, ``__hash__``, the frozen
``__setattr__``) are compiled when first needed: when the class is called, an instance of it is
compared, printed, hashed or assigned to, or its dataclass fields are asked for. The reader
builds instances without ``__init__`` and without the dataclass, so parsing a server answer
compiles only its reader, and neither importing the models nor reading them imports
``dataclasses`` (with ``inspect``, ``ast``, ``dis`` and ``tokenize``, about a sixth of a first
call's start-up): fields are declared with this module's :func:`field`, which becomes
``dataclasses.field`` when the dataclass is made. A made class keeps no dataclass class
attributes for field defaults (``Event.deleted`` is no attribute; the defaults live in the
fields and ``__init__``), and no class has a ``__getattr__`` on its instances: either makes every
read of an instance's field several times slower on 3.11+, which cannot specialise it.
"""

from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Tuple, Type, TypeVar, Union

from .errors import ModelError

__all__ = ["Kind", "STR", "INT", "BOOL", "NUMBER", "OBJECT", "LIST", "ANY", "nested", "nested_list", "typed_by"]
__all__ += ["json_field", "field", "MISSING", "spec_of", "Spec", "JsonModel", "JsonDict", "model", "LazyDataclassMeta"]
__all__ += ["TaggedReader", "read_owned"]

JsonDict = Dict[str, Any]
M = TypeVar("M", bound="JsonModel")


class Kind:
    """What JSON a field holds, and how it becomes the field's value and back.

    (This module's records are plain classes: a NamedTuple compiles code when it is declared.)
    """

    __slots__ = ("accepts", "by", "exact", "many", "model", "name", "owned", "read", "readers", "write")

    def __init__(
        self,
        name: str,  # for error messages
        exact: Optional[type],  # the JSON type of the common case, checked with ``type(v) is``; None: any
        accepts: Tuple[type, ...],  # what the slower isinstance() check lets through
        read: Optional[Callable[..., Any]] = None,  # JSON value (or list item) -> field value
        write: Optional[Callable[[Any], Any]] = None,  # field value -> JSON value
        model: Optional[type] = None,  # a nested model, read and written by its own spec
        many: bool = False,  # a JSON list of such items, held as a tuple
        by: Optional[str] = None,  # see typed_by
        readers: Optional[Dict[Any, Callable[[Any], Any]]] = None,
        owned: Optional["Kind"] = None,  # how read_owned reads it, when not as read does (see Spec)
    ) -> None:
        self.name, self.exact, self.accepts, self.read, self.write = name, exact, accepts, read, write
        self.model, self.many, self.by, self.readers = model, many, by, readers
        self.owned = self if owned is None else owned


STR = Kind("str", str, (str,))
INT = Kind("int", int, (int,))
BOOL = Kind("bool", bool, (bool,))
NUMBER = Kind("int/float", float, (int, float), float)
# copied: a model shares nothing mutable with its input (read_owned keeps them: nobody else does)
OBJECT = Kind("dict", dict, (dict,), dict, owned=Kind("dict", dict, (dict,)))
LIST = Kind("list", list, (list,), list, owned=Kind("list", list, (list,)))
ANY = Kind("any", None, ())


def nested(cls: type) -> Kind:
    """A nested model (whose reader checks the JSON's shape itself)."""
    return Kind("object", None, (), model=cls)


def typed_by(field_name: str, read: "TaggedReader", write: Callable[[Any], Any]) -> Kind:
    """Any JSON, read by the value of the model's field ``field_name`` (declared before it, a
    string): by ``read``'s model for that tag, else by its ``unknown``. It is read after every
    other field, as a last step: a field's error comes first."""
    return Kind(
        "any", None, (), read.fallback, write, by=field_name, readers=read.readers,
        owned=Kind("any", None, (), read.owned.fallback, write, by=field_name, readers=read.owned.readers),
    )  # fmt: skip


def nested_list(item: Union[type, "TaggedReader"], write: Optional[Callable[[Any], Any]] = None) -> Kind:
    """A list of nested models of one class, or of items that ``item`` reads (by a tag of each
    item) and ``write`` writes."""
    if isinstance(item, type):
        return Kind("list", list, (list,), model=item, many=True)
    return Kind(
        "list", list, (list,), read=item.read, write=write, many=True,
        owned=Kind("list", list, (list,), read=item.owned.read, write=write, many=True),
    )  # fmt: skip


class TaggedReader:
    """Reads a JSON value by the model its tag names (``models[tag]``), or by ``unknown(tag,
    value)`` for a tag no model has. The tag is another field's value (:func:`typed_by`), or a
    member of the value itself (``tag_key``: items of :func:`nested_list`, where ``unknown`` is
    also given values that are no object). Each model's reader is looked up once, on its first
    use; :attr:`owned` reads as ``read_owned`` does (see :class:`Spec`)."""

    __slots__ = ("_models", "_owned", "_tag_key", "_unknown", "owned", "readers")

    def __init__(
        self,
        models: Mapping[str, type],
        unknown: Callable[[Any, Any], Any],
        tag_key: Optional[str] = None,
        *,
        _owned: bool = False,
    ) -> None:
        self._models, self._unknown, self._tag_key, self._owned = models, unknown, tag_key, _owned
        self.readers: Dict[str, Callable[[Any], Any]] = {}  # by tag, filled on first use
        self.owned: TaggedReader = TaggedReader(models, unknown, tag_key, _owned=True) if not _owned else self

    def fallback(self, tag: Any, value: Any) -> Any:
        """``value`` read by the model of ``tag``, whose reader is not in :attr:`readers` yet."""
        model = self._models.get(tag) if type(tag) is str else None
        if model is None:
            return self._unknown(tag, value)
        spec = spec_of(model)
        reader = self.readers[tag] = spec.read_owned if self._owned else spec.read
        return reader(value)

    def read(self, value: Any) -> Any:
        """``value`` read by the model its own ``tag_key`` member names."""
        tag = value.get(self._tag_key) if type(value) is dict or isinstance(value, dict) else None
        reader = self.readers.get(tag) if type(tag) is str else None
        return reader(value) if reader is not None else self.fallback(tag, value)


class _Rule:
    __slots__ = ("absent", "key", "kind", "omit_none", "required")

    def __init__(self, kind: Kind, key: Optional[str], required: bool, absent: Any, omit_none: bool) -> None:
        self.kind, self.key, self.required, self.absent, self.omit_none = kind, key, required, absent, omit_none


class _Factory:
    __slots__ = ("make",)

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make


_NO_VALUE: Any = object()
_REQUIRED: Any = object()
_METADATA_KEY = "flux0lite.json"


def json_field(
    kind: Kind, *, key: Optional[str] = None, required: bool = False, absent: Any = _NO_VALUE, omit_none: bool = False
) -> Dict[str, _Rule]:
    """Field metadata: the JSON ``kind``; ``absent`` is the value for null or missing when it
    differs from the dataclass default (fields without a default otherwise read as None)."""
    return {_METADATA_KEY: _Rule(kind, key, required, absent, omit_none)}


class _Missing:
    """No default: ``dataclasses.MISSING`` until ``dataclasses`` is imported."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class _FieldDeclaration:
    """What :func:`field` declares, kept on the class until its dataclass is made."""

    __slots__ = ("compare", "default", "default_factory", "metadata", "repr")

    def __init__(self, default: Any, default_factory: Any, repr: bool, compare: bool, metadata: Any) -> None:
        self.default, self.default_factory, self.repr, self.compare = default, default_factory, repr, compare
        self.metadata = {} if metadata is None else metadata

    def as_dataclass_field(self) -> Any:
        import dataclasses

        def given(value: Any) -> Any:
            return dataclasses.MISSING if value is MISSING else value

        return dataclasses.field(
            default=given(self.default),
            default_factory=given(self.default_factory),
            repr=self.repr,
            compare=self.compare,
            metadata=self.metadata,
        )


def _field(
    *,
    default: Any = MISSING,
    default_factory: Any = MISSING,
    repr: bool = True,
    compare: bool = True,
    metadata: Optional[Mapping[str, Any]] = None,
) -> Any:
    """``dataclasses.field`` for :func:`model` classes (the options they use), without importing
    ``dataclasses``: the declaration becomes a ``dataclasses.field`` when the dataclass is made."""
    if default is not MISSING and default_factory is not MISSING:
        raise ValueError("cannot specify both default and default_factory")
    return _FieldDeclaration(default, default_factory, repr, compare, metadata)


# -- dataclasses made on first need ----------------------------------------------------------

_PENDING = "_dataclass_options_"  # in a class's own __dict__ until its dataclass is made
# Meanwhile the fields' declarations (defaults and field()s) wait here, not as class
# attributes: those would shadow the fields of the instances read before the dataclass is made.
_DECLARATIONS = "_field_declarations_"
# what the dataclass adds, or changes, that is asked of the class itself: by dataclasses.fields(),
# a match statement, copy.replace() (3.13), inspect.signature() (which then reads the real
# __init__; dataclass() itself asks while it makes the class: see _making)
_DATACLASS_ATTRIBUTES = frozenset(
    {"__dataclass_fields__", "__dataclass_params__", "__match_args__", "__replace__", "__signature__"}
)
_making = threading.local()  # .depth: how many dataclasses this thread is making, one in another
# what dataclasses.fields() and is_dataclass() read, from an instance as from its class
_READ_FROM_INSTANCES = ("__dataclass_fields__", "__dataclass_params__")
_MAKING = threading.RLock()
_C = TypeVar("_C", bound=type)


def _dataclass(cls: type, options: Dict[str, Any]) -> None:
    """``dataclass(cls, **options)``, in place (model() takes no slots=), without the class
    attributes it leaves for the fields' defaults: an instance attribute that a class attribute
    shadows is read several times slower (3.11+ does not specialise the read). The defaults
    stay where the dataclass uses them: in the fields and in ``__init__``. Declarations made
    with :func:`field` become ``dataclasses.field`` first."""
    import dataclasses

    declarations = cls.__dict__.get(_DECLARATIONS)
    if declarations is None:  # a class made as it is declared
        declarations = {name: value for name, value in cls.__dict__.items() if type(value) is _FieldDeclaration}
    for name, value in declarations.items():
        type.__setattr__(cls, name, value.as_dataclass_field() if type(value) is _FieldDeclaration else value)
    dataclasses.dataclass(cls, **options)
    if cls.__dict__.get("__hash__") is _hash:  # set to None while made (see LazyDataclassMeta)
        type.__setattr__(cls, "__hash__", None)
    for name in _STAND_INS:
        if getattr(cls, name) is LazyDataclass.__dict__[name]:
            # a method dataclass() leaves to the class (eq=False, no frozen=True, init=False...):
            # the plain object's, as a dataclass that derives from nothing has (the stand-in
            # would only call itself)
            type.__setattr__(cls, name, getattr(object, name))
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING and f.name in cls.__dict__:
            type.__delattr__(cls, f.name)
    if _DECLARATIONS in cls.__dict__:
        type.__delattr__(cls, _DECLARATIONS)


def _make_dataclass(cls: type) -> None:
    """Turn a class declared with :func:`model` into its dataclass (once; thread-safe).

    The stand-ins live on :class:`LazyDataclass`, a base, so making the dataclass only adds
    each real method to the class, one assignment at a time: another thread, using an instance
    meanwhile, never finds a method missing, and a stand-in it reaches waits here for the real
    one. The dataclass replaces the class's :class:`_MadeOnRead` attributes with its own, each
    in one assignment. The pending mark goes last, so a waiting thread sees the class either
    pending or made.
    """
    with _MAKING:
        options = cls.__dict__.get(_PENDING)
        if options is None:
            return
        _making.depth = getattr(_making, "depth", 0) + 1
        try:
            _dataclass(cls, options)
        finally:
            _making.depth -= 1
        type.__delattr__(cls, _PENDING)


def _made(instance: Any, method: str) -> Callable[..., Any]:
    """``method`` of the instance's class, with its dataclass made first."""
    cls = type(instance)
    for klass in cls.__mro__:
        if _PENDING in klass.__dict__:
            _make_dataclass(klass)
    found: Callable[..., Any] = getattr(cls, method)
    return found


class _MadeOnRead:
    """A pending class's ``__dataclass_fields__`` or ``__dataclass_params__``: reading it, from
    the class or from an instance (``dataclasses.fields(instance)`` does), makes the dataclass,
    which puts its own in this one's place. (A class attribute, not a ``__getattr__`` on the
    instances: that would make every read of their fields slower.)"""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, instance: Any, owner: type) -> Any:
        for klass in owner.__mro__:
            if _PENDING in klass.__dict__:
                _make_dataclass(klass)
        return getattr(owner, self.name)


def _init(self: Any, *args: Any, **kwargs: Any) -> None:
    _made(self, "__init__")(self, *args, **kwargs)


def _repr(self: Any) -> str:
    text: str = _made(self, "__repr__")(self)
    return text


def _eq(self: Any, other: Any) -> Any:
    return _made(self, "__eq__")(self, other)


def _hash(self: Any) -> int:
    made: Optional[Callable[[Any], int]] = _made(self, "__hash__")
    if made is None:  # an unhashable dataclass (eq without frozen), as hash() says it
        raise TypeError(f"unhashable type: {type(self).__name__!r}")
    return made(self)


def _setattr(self: Any, name: str, value: Any) -> None:
    _made(self, "__setattr__")(self, name, value)


def _delattr(self: Any, name: str) -> None:
    _made(self, "__delattr__")(self, name)


class LazyDataclassMeta(type):
    """The metaclass of :func:`model` classes: asking a pending class for what its dataclass
    adds (``__match_args__`` for a ``match`` statement, ``__replace__`` for ``copy.replace``,
    ``__signature__`` for ``inspect.signature``) makes its dataclass first. (Its
    ``__dataclass_fields__`` and ``__dataclass_params__`` are :class:`_MadeOnRead` attributes,
    read from instances too.)"""

    def __getattr__(cls, name: str) -> Any:  # only for names the class does not have
        if name == "__signature__" and getattr(_making, "depth", 0) > 0:
            # dataclass() reads the signature of the class it is making: from its new __init__
            raise AttributeError(f"type object {cls.__name__!r} has no attribute {name!r}")
        pending = (
            [klass for klass in cls.__mro__ if _PENDING in klass.__dict__] if name in _DATACLASS_ATTRIBUTES else []
        )
        if pending:  # the class's own, or a base's (a subclass of a model inherits its dataclass)
            for klass in pending:
                _make_dataclass(klass)
            return getattr(cls, name)
        raise AttributeError(f"type object {cls.__name__!r} has no attribute {name!r}")

    def __setattr__(cls, name: str, value: Any) -> None:
        if name == "__hash__" and value is None and _PENDING in cls.__dict__ and getattr(_making, "depth", 0) > 0:
            # dataclass() (3.13) sets __hash__ to None, then to the real one with the other
            # methods: meanwhile another thread hashing an instance would find it unhashable.
            # The stand-in waits for the made class instead; None is set once it is made, if
            # the class is unhashable after all (see _dataclass).
            value = _hash
        type.__setattr__(cls, name, value)


class LazyDataclass(metaclass=LazyDataclassMeta):
    """The base of :func:`model` classes: until a class's dataclass is made, these stand-ins
    make it on first use and pass the call on to the real method."""

    __init__ = _init
    __repr__ = _repr
    __eq__ = _eq
    __hash__ = _hash
    __setattr__ = _setattr
    __delattr__ = _delattr


_STAND_INS = ("__init__", "__repr__", "__eq__", "__hash__", "__setattr__", "__delattr__")


def _model(**options: Any) -> Callable[[_C], _C]:
    """``dataclass(**options)``, made on first need (see the module docstring); the class must
    have :class:`LazyDataclassMeta` as its metaclass, as every :class:`JsonModel` has."""

    def declare(cls: _C) -> _C:
        # lazily only where every stand-in is what the class would use (not hidden by a base)
        lazy = (
            issubclass(cls, LazyDataclass)
            and all(getattr(cls, name) is LazyDataclass.__dict__[name] for name in _STAND_INS)
            and not any(name in cls.__dict__ for name in _READ_FROM_INSTANCES)
        )
        if not lazy:
            _dataclass(cls, options)
            return cls
        for name in _READ_FROM_INSTANCES:
            type.__setattr__(cls, name, _MadeOnRead(name))
        annotations = cls.__dict__.get("__annotations__", {})  # noqa: RUF063 - its own
        declarations = {name: cls.__dict__[name] for name in annotations if name in cls.__dict__}
        for name in declarations:
            type.__delattr__(cls, name)
        type.__setattr__(cls, _DECLARATIONS, declarations)
        type.__setattr__(cls, _PENDING, options)
        return cls

    return declare


if TYPE_CHECKING:  # what they make, on first need: a dataclass and its fields
    from dataclasses import dataclass as model
    from dataclasses import field
else:
    model, field = _model, _field


class _Declared:
    __slots__ = ("default", "default_factory", "metadata", "name")

    def __init__(self, name: str, metadata: Any, default: Any, default_factory: Any) -> None:
        self.name, self.metadata, self.default, self.default_factory = name, metadata, default, default_factory


def _declared(name: str, declaration: Any) -> _Declared:
    """A ``dataclasses.Field`` as a :class:`_Declared` (its MISSING as this module's)."""
    missing = sys.modules["dataclasses"].MISSING
    default, factory = declaration.default, declaration.default_factory
    return _Declared(
        name,
        declaration.metadata,
        MISSING if default is missing else default,
        MISSING if factory is missing else factory,
    )


def _declared_fields(cls: type) -> List[_Declared]:
    """A model's fields in order, read from its declarations without making its dataclass (a
    made one's from its dataclass fields); no default is :data:`MISSING`."""
    annotations = cls.__dict__.get("__annotations__")  # noqa: RUF063 - its own, and 3.9 has no get_annotations
    if _PENDING not in cls.__dict__ or annotations is None:
        import dataclasses

        return [_declared(f.name, f) for f in dataclasses.fields(cls)]
    declared, declarations = [], cls.__dict__.get(_DECLARATIONS, {})
    for name in annotations:
        value = declarations.get(name, MISSING)
        if type(value) is _FieldDeclaration:
            declared.append(_Declared(name, value.metadata, value.default, value.default_factory))
        elif "dataclasses" in sys.modules and isinstance(value, sys.modules["dataclasses"].Field):
            declared.append(_declared(name, value))  # a dataclasses.field declaration works too
        else:
            declared.append(_Declared(name, {}, value, MISSING))
    return declared


class Spec:
    """A model class's compiled reader and writer (:func:`spec_of`)."""

    __slots__ = ("read", "read_owned", "twin", "write")

    def __init__(
        self,
        read: Callable[[Any], Any],
        read_owned: Callable[[Any], Any],
        write: Callable[[Any], JsonDict],
        twin: Optional[type],
    ) -> None:
        self.read = read  # JSON object -> instance (``from_dict``): shares nothing mutable with it
        # The same, for a JSON object nobody else holds (one just parsed from a server's
        # answer): the instance may keep it, and what it holds, and change it (it may become
        # the instance's __dict__, its keys in the JSON's order). Where read copies a dict or
        # list, read_owned keeps it.
        self.read_owned = read_owned
        self.write = write  # instance -> JSON object
        # How read builds an instance, or None: a twin() given the fields' dict (every field,
        # ``extra`` too, in field order) as __dict__, then the class by __class__ assignment.
        self.twin = twin


def spec_of(cls: type) -> Spec:
    """A model class's reader and writer (made on the class's first use, then kept on it)."""
    spec: Optional[Spec] = cls.__dict__.get("_json_spec_")
    if spec is None:
        # Its dataclass stays pending (instances need none of it: see _make_dataclass); the lock
        # keeps another thread from making that dataclass while this one reads the declarations.
        with _MAKING:
            spec = cls.__dict__.get("_json_spec_")
            if spec is None:
                spec = _make_spec(cls)
                type.__setattr__(cls, "_json_spec_", spec)
    return spec


def _twin_of(cls: type) -> Optional[type]:
    """A plain class whose instances may become ``cls``'s by ``__class__`` assignment (the same
    layout: a ``__dict__`` and weak references, no slots, no ``__new__`` or ``__init__`` of
    its own), or None where ``cls`` has another layout."""
    twin = type(cls.__name__, (), {"__slots__": ("__dict__", "__weakref__"), "__qualname__": cls.__qualname__})
    try:
        instance = twin()
        instance.__class__ = cls
    except TypeError:
        return None
    return twin


def _make_spec(cls: type) -> Spec:
    """A model class's reader and writer, made from its field declarations.

    They are compiled, as dataclasses compiles ``__init__``, into the straight-line code a
    careful hand-written parser would be, so declaring each field once costs nothing per event.
    Per field the reader runs, e.g. for ``offset``::

        v = get('offset', NO_KEY)
        if type(v) is T3: f3 = v                    # the common case: one identity test
        elif v is None: f3 = absent(3)              # null: the default, or ModelError if required
        elif v is NO_KEY: f3 = absent(3); gone += 1 # missing, and counted
        else: ...check(3, v)...                     # isinstance(), else ModelError

    Unknown fields are found by counting, not by a set test per object: raw holds exactly
    ``len(declared) - gone`` known keys, so it has others only if it is longer than that.
    The fields' values go into one dict, which becomes the instance's ``__dict__``.
    """
    model, declared = cls.__name__, []
    cls_fields = _declared_fields(cls)
    for f in cls_fields:
        rule = f.metadata.get(_METADATA_KEY)
        if rule is None:
            continue
        if rule.required:
            absent = _REQUIRED
        elif rule.absent is not _NO_VALUE:
            absent = rule.absent
        elif f.default_factory is not MISSING:
            absent = _Factory(f.default_factory)
        else:
            absent = None if f.default is MISSING else f.default
        declared.append((f.name, rule.key or f.name, rule.kind, absent, rule.omit_none))
    keeps_extra = any(f.name == "extra" for f in cls_fields)

    def absent_value(i: int) -> Any:
        absent = declared[i][3]
        if absent is _REQUIRED:
            raise ModelError(f"{model}: missing field {declared[i][1]!r}")
        return absent.make() if isinstance(absent, _Factory) else absent

    def check(i: int, value: Any) -> Any:
        _, key, kind, _, _ = declared[i]
        # bool is an int in Python, but never a valid number in these models
        if not isinstance(value, kind.accepts) or (isinstance(value, bool) and bool not in kind.accepts):
            raise ModelError(f"{model}: field {key!r} should be {kind.name}, got {type(value).__name__}")
        return value

    scope: JsonDict = {
        "cls": cls, "new": object.__new__, "setattr": object.__setattr__, "absent": absent_value, "check": check,
        "ModelError": ModelError, "NO_KEY": _NO_VALUE, "twin": _twin_of(cls),
        "known": frozenset(key for _, key, _, _, _ in declared),
    }  # fmt: skip
    builds_by_twin = not hasattr(cls, "__post_init__") and scope["twin"] is not None
    written, omitted = [], []  # JSON entries, and statements for the fields left out when None
    for i, (attr, key, kind, default, omit_none) in enumerate(declared):
        for suffix, mode in (("", kind), ("o", kind.owned)):  # read's, then read_owned's
            nested = spec_of(mode.model) if mode.model is not None else None
            scope[f"R{i}{suffix}"] = (nested.read_owned if suffix else nested.read) if nested else mode.read
            scope[f"D{i}{suffix}"] = mode.readers
        nested = spec_of(kind.model) if kind.model is not None else None
        scope[f"W{i}"] = writer = nested.write if nested is not None else kind.write
        scope[f"T{i}"] = kind.exact
        if default is None or type(default) in (str, int, bool, float) or (type(default) is tuple and not default):
            scope[f"A{i}"] = default  # an immutable default, shared: no call for a missing field
        field_value = f"d[{attr!r}]"
        dump = f"[W{i}(x) for x in {field_value}]" if kind.many else f"W{i}({field_value})" if writer else field_value
        if omit_none:
            omitted.append(f"    if {field_value} is not None: out[{key!r}] = {dump}")
        else:
            guarded = dump if dump == field_value else f"None if {field_value} is None else {dump}"
            written.append(f"{key!r}: {guarded}")
    # read_owned may keep raw itself as the instance's __dict__ where its keys are the attributes
    in_place = builds_by_twin and all(attr == key for attr, key, _, _, _ in declared)
    read = _reader_source("read", "", declared, keeps_extra, scope, in_place=False)
    read += _reader_source("read_owned", "o", declared, keeps_extra, scope, in_place=in_place)
    write = ["def write(self):", "    d = self.__dict__", "    out = {" + ", ".join(written) + "}", *omitted]
    if keeps_extra:  # unknown fields first, as they came; a declared field wins over one
        write.append("    if d['extra']: out = {**d['extra'], **out}")
    write.append("    return out")
    exec("\n".join(read + write), scope)  # noqa: S102 - source made above from the declarations only
    return Spec(scope["read"], scope["read_owned"], scope["write"], scope["twin"] if builds_by_twin else None)


Declared = List[Tuple[str, str, Kind, Any, bool]]  # (attribute, JSON key, kind, value when absent, omit_none)


def _reader_source(
    name: str, suffix: str, declared: Declared, keeps_extra: bool, scope: JsonDict, in_place: bool
) -> List[str]:
    """The source of one reader (see _make_spec): read's, whose readers in the scope are R0, R1...,
    or read_owned's (suffix "o": R0o, R1o..., each kind's ``owned`` one)."""
    cls, model = scope["cls"], scope["cls"].__name__
    kinds = [kind if not suffix else kind.owned for _, _, kind, _, _ in declared]
    read = [
        f"def {name}(raw):",
        "    if type(raw) is not dict and not isinstance(raw, dict):",
        f"        raise ModelError(f'{model}: expected a JSON object, got {{type(raw).__name__}}')",
        "    get = raw.get",
        "    gone = 0",
    ]
    by_tag = []  # the last step: fields read by another's value (typed_by)
    for i, ((_, key, _, default, _), kind) in enumerate(zip(declared, kinds)):
        reader = f"R{i}{suffix}"
        if kind.by is not None:
            tag = next(j for j, d in enumerate(declared[:i]) if d[0] == kind.by)
            by_tag.append(f"r = D{i}{suffix}.get(f{tag})\nf{i} = r(f{i}) if r is not None else {reader}(f{tag}, f{i})")
            value = "v"
        elif scope[reader] is None:
            value = "v"
        else:
            value = f"tuple(map({reader}, v))" if kind.many else f"{reader}(v)"
        missing = f"A{i}" if f"A{i}" in scope else f"absent({i})"
        # ``gone`` counts the keys missing from raw, for the unknown-field test at the end
        count_missing = f"elif v is NO_KEY:\n        f{i} = {missing}\n        gone += 1"
        if kind.exact is None and value == "v" and default is None:
            # any JSON, None when null or missing: as it is
            read.append(
                f"    f{i} = get({key!r}, NO_KEY)\n    if f{i} is NO_KEY:\n        f{i} = None\n        gone += 1"
            )
        elif kind.exact is None:
            read.append(f"    v = get({key!r}, NO_KEY)\n    if v is None: f{i} = {missing}\n    {count_missing}")
            read.append(f"    else: f{i} = {value}")
        else:
            read.append(f"    v = get({key!r}, NO_KEY)")  # the common case first: one identity test
            read.append(
                f"    if type(v) is T{i}: f{i} = {value}\n    elif v is None: f{i} = {missing}\n    {count_missing}"
            )
            read.append(f"    else:\n        v = check({i}, v)\n        f{i} = {value}")
    steps = [line for step in by_tag for line in step.split("\n")]
    entries = [f"{d[0]!r}: f{i}" for i, d in enumerate(declared)]
    fast_entries = entries + (["'extra': {}"] if keeps_extra else [])
    if keeps_extra:
        # raw holds len(declared) - gone known keys: any other key is an unknown field
        unknown = (
            f"len(raw) + gone != {len(declared)}" if len(scope["known"]) == len(declared) else "raw.keys() - known"
        )
        entries.append(f"'extra': {{k: v for k, v in raw.items() if k not in known}} if {unknown} else {{}}")

    def finish(values: List[str]) -> List[str]:
        """values -> the instance"""
        lines = [*steps, f"values = {{{', '.join(values)}}}"]
        if hasattr(cls, "__post_init__"):
            lines.append("return cls(**values)")
        elif scope["twin"] is not None:
            # A frozen dataclass's __init__ sets each field through object.__setattr__, most of
            # the cost of parsing; every field is set here, so this is the object cls(**values)
            # makes (values becomes its __dict__: nothing else holds it). It is made as an
            # instance of a plain twin class, whose attributes are set the quick way (no call
            # of object.__setattr__), then given its class: a fifth cheaper per object.
            lines += ["instance = twin()", "instance.__dict__ = values", "instance.__class__ = cls", "return instance"]
        else:
            lines += ["instance = new(cls)", "setattr(instance, '__dict__', values)", "return instance"]
        return lines

    read += ["    " + line for line in finish(entries)]
    if declared and len(scope["known"]) == len(declared):  # a fast path, unless two fields share a key
        if in_place:
            # raw holds exactly the fields, by their attribute names: it becomes the __dict__,
            # given the values read from its own (and an empty extra), with no dict built
            made = steps + [
                f"raw[{attr!r}] = f{i}"
                for i, ((attr, _, _, _, _), kind) in enumerate(zip(declared, kinds))
                if kind.by or scope[f"R{i}{suffix}"]
            ]
            made += ["raw['extra'] = {}"] if keeps_extra else []
            made += ["instance = twin()", "instance.__dict__ = raw", "instance.__class__ = cls", "return instance"]
        else:
            made = finish(fast_entries)
        read[1:1] = _fast_path(declared, kinds, suffix, scope) + [" " * 16 + line for line in made]
    return read


def _fast_path(declared: Declared, kinds: List[Kind], suffix: str, scope: JsonDict) -> List[str]:
    """The first lines of a reader, for the common object: every declared key and no other,
    each value of its usual JSON type (or null where that reads as None). They make (or raise)
    exactly what the general lines after them would, with one dict lookup and one identity test
    per field; any other object goes on to those lines. Nested values are read in field order
    once every field's type has passed, so the first error raised is the one the general lines
    would raise. Its contract is ``tests/test_models_fast_path.py``: any JSON reads to the
    same instance, or the same error, as the general lines read it.
    """
    fetch, tests, reads = [], [], []
    for i, ((_, key, _, default, _), kind) in enumerate(zip(declared, kinds)):
        fetch.append(f"f{i} = raw[{key!r}]")
        if kind.exact is not None:
            tests.append(f"(type(f{i}) is T{i} or f{i} is None)" if default is None else f"type(f{i}) is T{i}")
        elif default is not None:
            tests.append(f"f{i} is not None")
        reader = f"R{i}{suffix}"
        if scope[reader] is None or kind.by is not None:
            continue  # as it is, or read by another field's value as a last step (finish)
        # most lists of nested values hold one: a 1-tuple is cheaper made than by tuple(map())
        value = f"{reader}(f{i})"
        if kind.many:
            value = f"({reader}(f{i}[0]),) if len(f{i}) == 1 else tuple(map({reader}, f{i}))"
        reads.append(f"if f{i} is not None: f{i} = {value}" if default is None else f"f{i} = {value}")
    return [
        f"    if type(raw) is dict and len(raw) == {len(declared)}:",
        "        try:",
        *("            " + line for line in fetch),
        "        except KeyError:",
        "            pass",
        "        else:",
        f"            if {' and '.join(tests) or 'True'}:",
        *("                " + line for line in reads),
    ]


def read_owned(cls: Type[M], raw: Any) -> M:
    """``cls.from_dict(raw)`` for a JSON object nobody else holds (see :attr:`Spec.read_owned`)."""
    instance: M = spec_of(cls).read_owned(raw)
    return instance


class JsonModel(LazyDataclass):
    """``from_dict`` and ``to_dict`` for a dataclass whose fields declare their JSON."""

    @classmethod
    def from_dict(cls: Type[M], raw: Any) -> M:
        instance: M = spec_of(cls).read(raw)
        return instance

    def to_dict(self) -> JsonDict:
        return spec_of(type(self)).write(self)
