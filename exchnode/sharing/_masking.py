"""Projection and masking of records under a grant (脱敏) (pure).

Theory of operation
-------------------
A *record* is one row of a resource: data-item name → value.  A grant names
the items its subscriber may receive, and :class:`Projection` drops every
other item before anything leaves the provider, so a record can never carry
more than was granted, whatever the provider's application hands over.

A granted item may also be masked, by a declarative rule that travels inside
the grant (canonical msgpack, SPEC §4) so the subscriber knows what it holds:

* ``keep(first, last, char)``: keep the ends of a text, replace the middle,
  character for character: ``110101199003071234`` → ``110101********1234``
  with ``keep(6, 4)``.  A text no longer than ``first + last`` is replaced
  whole, since keeping both ends would reveal it all.
* ``redact``: the value becomes a fixed text (``"***"``) or null.
* ``hash``: HMAC-SHA256 of the value under a key that belongs to the grant,
  as lowercase hex.  The subscriber can join and count equal values without
  learning them.  Keyed, because an unkeyed hash of an ID number is no mask:
  the space of valid ID numbers (division, birth date, sequence, check digit)
  is small enough to hash exhaustively.  The key stays with the provider and
  is derived per grant (:func:`grant_hash_key`), so two subscribers cannot
  join their copies with each other either.  Within one grant the key is the
  same for every item, so one person's ID joins across items.
* ``year_only``: a date or datetime text (``YYYY-MM-DD...``, ``YYYYMMDD``)
  keeps its year.

Deliberate choices about values:

* ``None`` stays ``None`` under every rule: absence is visible, content is not.
* ``keep`` and ``year_only`` apply to text only.  On any other value they
  raise :class:`MaskingError` instead of guessing a text form (an ID number
  stored as an integer has already lost its leading zeros): the record is
  then not delivered, rather than delivered half-masked.
* ``hash`` hashes the canonical msgpack encoding of the value, so the text
  ``"1"`` and the integer ``1`` differ, and bytes are hashed as bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from exchnode.core import pack, require_canonical, unpack
from exchnode.errors import MalformedError, MaskingError, UsageError

__all__ = [
    "MAX_ITEM_NAME",
    "Hash",
    "Keep",
    "MaskRule",
    "MaskSet",
    "Projection",
    "Record",
    "Redact",
    "Value",
    "YearOnly",
    "check_item_name",
    "grant_hash_key",
]

Value = str | int | float | bool | bytes | None
Record = Mapping[str, Value]

MAX_ITEM_NAME = 64
MAX_MASKS = 1024
_MAX_KEEP = 64
_MAX_REPLACEMENT = 16
_HASH_KEY_LENGTH = 32
_VALUE_TYPES = (str, int, float, bool, bytes, type(None))


class _Rule:
    """What every masking rule shares: its wire form is its name, then its parameters in the
    order they are declared; a rule without parameters has nothing to get wrong."""

    __slots__ = ()
    name: ClassVar[str]

    def problem(self) -> str | None:
        return None

    def to_wire(self) -> list[Any]:
        return [self.name, *(getattr(self, f.name) for f in fields(self))]  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Keep(_Rule):
    first: int = 6
    last: int = 4
    char: str = "*"
    name: ClassVar[str] = "keep"

    def problem(self) -> str | None:
        for label, count in (("first", self.first), ("last", self.last)):
            if type(count) is not int or not 0 <= count <= _MAX_KEEP:
                return f"{label} must be an integer 0..{_MAX_KEEP}"
        if type(self.char) is not str or len(self.char) != 1:
            return "char must be exactly one character"
        return None

    def apply(self, item: str, value: Value, key: bytes | None) -> Value:
        text = _text(item, self.name, value)
        if len(text) <= self.first + self.last:
            return self.char * len(text)
        middle = self.char * (len(text) - self.first - self.last)
        return text[: self.first] + middle + text[len(text) - self.last :]


@dataclass(frozen=True, slots=True)
class Redact(_Rule):
    replacement: str | None = "***"
    name: ClassVar[str] = "redact"

    def problem(self) -> str | None:
        if self.replacement is None:
            return None
        if type(self.replacement) is not str or len(self.replacement) > _MAX_REPLACEMENT:
            return f"replacement must be null or a text of at most {_MAX_REPLACEMENT} characters"
        return None

    def apply(self, item: str, value: Value, key: bytes | None) -> Value:
        return self.replacement


@dataclass(frozen=True, slots=True)
class Hash(_Rule):
    name: ClassVar[str] = "hash"

    def apply(self, item: str, value: Value, key: bytes | None) -> Value:
        if key is None:
            raise MaskingError(item, self.name, "needs the grant's hash key")
        mac = hmac.HMAC(key, hashes.SHA256())
        mac.update(pack(value))
        return mac.finalize().hex()


@dataclass(frozen=True, slots=True)
class YearOnly(_Rule):
    name: ClassVar[str] = "year_only"

    def apply(self, item: str, value: Value, key: bytes | None) -> Value:
        text = _text(item, self.name, value)
        year = text[:4]
        if not (year.isascii() and year.isdigit()):
            raise MaskingError(item, self.name, "the value does not start with a 4-digit year")
        return year


MaskRule = Keep | Redact | Hash | YearOnly
_RULES: dict[str, type[MaskRule]] = {rule.name: rule for rule in (Keep, Redact, Hash, YearOnly)}


def _text(item: str, rule: str, value: Value) -> str:
    if type(value) is not str:
        raise MaskingError(item, rule, f"applies to text, the value is {type(value).__name__}")
    return value


def check_item_name(name: object, what: str) -> str:
    """A data-item name as the catalog writes it: 1..64 characters of text."""
    if type(name) is not str or not 0 < len(name) <= MAX_ITEM_NAME:
        raise MalformedError(what, f"a data-item name is a text of 1..{MAX_ITEM_NAME} characters")
    return name


@dataclass(frozen=True, slots=True)
class MaskSet:
    """The masks of one grant: at most one rule per data item, sorted by item (one encoding)."""

    rules: tuple[tuple[str, MaskRule], ...] = ()

    def __post_init__(self) -> None:
        if len(self.rules) > MAX_MASKS:
            raise UsageError(f"at most {MAX_MASKS} masks per grant")
        names = [item for item, _ in self.rules]
        if names != sorted(set(names)):
            raise UsageError("mask items must be unique and sorted; build with MaskSet.of")
        for item, rule in self.rules:
            if not isinstance(rule, Keep | Redact | Hash | YearOnly):
                raise MaskingError(item, type(rule).__name__, "is not a masking rule")
            problem = rule.problem()
            if problem is not None:
                raise MaskingError(item, rule.name, problem)

    @classmethod
    def of(cls, rules: Mapping[str, MaskRule]) -> MaskSet:
        return cls(tuple(sorted(rules.items(), key=lambda pair: pair[0])))

    @property
    def items(self) -> frozenset[str]:
        return frozenset(item for item, _ in self.rules)

    def rule(self, item: str) -> MaskRule | None:
        return dict(self.rules).get(item)

    def to_wire(self) -> list[list[Any]]:
        return [[item, rule.to_wire()] for item, rule in self.rules]

    @classmethod
    def from_wire(cls, value: object, what: str) -> MaskSet:
        """The masks of an already-unpacked structure; a ``MalformedError`` names the field."""
        if type(value) is not list or len(value) > MAX_MASKS:
            raise MalformedError(what, f"must be an array of at most {MAX_MASKS} masks")
        rules: list[tuple[str, MaskRule]] = []
        for i, entry in enumerate(value):
            if type(entry) is not list or len(entry) != 2:
                raise MalformedError(f"{what}[{i}]", "expected [item, rule]")
            item = check_item_name(entry[0], f"{what}[{i}].item")
            rules.append((item, _rule_from_wire(entry[1], f"{what}[{i}].rule", item)))
        names = [item for item, _ in rules]
        if names != sorted(set(names)):
            raise MalformedError(what, "mask items must be unique and sorted")
        return cls(tuple(rules))

    def encode(self) -> bytes:
        return pack(self.to_wire())

    @classmethod
    def decode(cls, data: bytes) -> MaskSet:
        value = unpack(data, what="masks", max_size=65536, max_array=MAX_MASKS)
        masks = cls.from_wire(value, "masks")
        require_canonical(value, data, what="masks")
        return masks


def _rule_from_wire(value: object, what: str, item: str) -> MaskRule:
    if type(value) is not list or not value or type(value[0]) is not str:
        raise MalformedError(what, "expected [name, parameters...]")
    name, *params = value
    kind = _RULES.get(name)
    if kind is None or len(params) != len(fields(kind)):
        raise MalformedError(what, f"unknown rule {name!r} or wrong number of parameters")
    rule = kind(*params)
    problem = rule.problem()
    if problem is not None:
        raise MalformedError(what, f"{name} on {item!r}: {problem}")
    return rule


@dataclass(frozen=True, slots=True)
class Projection:
    """What one grant lets out of a record: its items, each masked by its rule."""

    items: frozenset[str]
    masks: MaskSet = MaskSet()
    hash_key: bytes | None = None

    def __post_init__(self) -> None:
        for item, rule in self.masks.rules:
            if item not in self.items:
                raise MaskingError(item, rule.name, "the item is not granted")
            if isinstance(rule, Hash) and self.hash_key is None:
                raise MaskingError(item, rule.name, "needs the grant's hash key")
        if self.hash_key is not None and len(self.hash_key) < _HASH_KEY_LENGTH:
            raise UsageError(f"a hash key has at least {_HASH_KEY_LENGTH} bytes")

    def apply(self, record: Record) -> dict[str, Value]:
        rules = dict(self.masks.rules)
        out: dict[str, Value] = {}
        for item, value in record.items():
            if item not in self.items:
                continue
            if not isinstance(value, _VALUE_TYPES):
                raise UsageError(f"data item {item!r}: unsupported value {type(value).__name__}")
            rule = rules.get(item)
            out[item] = (
                value if rule is None or value is None else rule.apply(item, value, self.hash_key)
            )
        return out


def grant_hash_key(secret: bytes, request_id: bytes) -> bytes:
    """The ``hash`` key of one grant, derived from the provider's secret (never sent).

    Derived rather than drawn so that the provider's grant table holds no key
    material: losing the table loses nothing, and a restored table hashes as
    before, which keeps a subscriber's joins stable across provider restarts.
    """
    if len(secret) < _HASH_KEY_LENGTH:
        raise UsageError(f"the masking secret has at least {_HASH_KEY_LENGTH} bytes")
    kdf = HKDF(
        algorithm=hashes.SHA256(),
        length=_HASH_KEY_LENGTH,
        salt=None,
        info=b"exchnode/1 grant hash key" + request_id,
    )
    return kdf.derive(secret)
