"""Notification attributes: what Write-Attributes stores and what an observation obeys.

Write-Attributes is a PUT whose query carries ``pmin=10&pmax=60&gt=30.5`` (Core §5.1.2); an
attribute given without a value (``?pmin``) is removed. Attributes attach to an object, an
instance, a resource or a resource instance; an observation uses the deepest assignment of each
attribute along its path, and falls back to the Server object's Default Minimum/Maximum Period
(/1/x/2, /1/x/3) for pmin/pmax — which is why that lookup is a parameter here and not a constant.

Checks (all answered 4.00): unknown attribute names, class attributes the server may not write
(``dim``, ``ver``…), non-numeric values, gt/lt/st on anything but a numeric resource, and
``lt < gt`` with ``lt + 2*st < gt`` once merged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping

import attrs

from object_models.errors import Lwm2mError, ResponseCode
from object_models.path import LwM2mPath

INTEGER_ATTRIBUTES = ("pmin", "pmax", "epmin", "epmax", "edge", "con", "hqmax")
FLOAT_ATTRIBUTES = ("gt", "lt", "st")
VALUE_ATTRIBUTES = ("gt", "lt", "st")
"""Attributes that only make sense on numeric resources (they compare values)."""

AttributeValue = int | float


@attrs.frozen
class Attributes:
    """Effective attributes of one observation (``None`` = not set)."""

    pmin: int | None = None
    pmax: int | None = None
    gt: float | None = None
    lt: float | None = None
    st: float | None = None
    epmin: int | None = None
    epmax: int | None = None

    @property
    def has_value_conditions(self) -> bool:
        return self.gt is not None or self.lt is not None or self.st is not None

    @property
    def effective_pmax(self) -> int | None:
        """pmax, ignored when it is 0 or smaller than pmin (Core §5.1.2: 'pmax > pmin')."""
        if not self.pmax:
            return None
        if self.pmin is not None and self.pmax < self.pmin:
            return None
        return self.pmax


def _bad(message: str) -> Lwm2mError:
    return Lwm2mError(message, code=ResponseCode.BAD_REQUEST)


def parse_query(query: Iterable[str]) -> dict[str, AttributeValue | None]:
    """``["pmin=10", "gt=2.5", "pmax"]`` → ``{"pmin": 10, "gt": 2.5, "pmax": None}``."""
    result: dict[str, AttributeValue | None] = {}
    for item in query:
        name, sep, text = item.partition("=")
        name = name.strip()
        if name in result:
            raise _bad(f"attribute {name} given twice")
        if name not in INTEGER_ATTRIBUTES and name not in FLOAT_ATTRIBUTES:
            raise _bad(f"attribute {name!r} cannot be written")
        if not sep:
            result[name] = None
            continue
        try:
            if name in INTEGER_ATTRIBUTES:
                number: AttributeValue = int(text)
            else:
                number = float(text)
        except ValueError:
            raise _bad(f"attribute {name}: {text!r} is not a number") from None
        if isinstance(number, float) and not math.isfinite(number):
            raise _bad(f"attribute {name}: {text!r} is not finite")
        if name in ("pmin", "pmax", "epmin", "epmax", "hqmax", "st") and number < 0:
            raise _bad(f"attribute {name} cannot be negative")
        if name in ("edge", "con") and number not in (0, 1):
            raise _bad(f"attribute {name} is 0 or 1")
        result[name] = number
    if not result:
        raise _bad("Write-Attributes without any attribute")
    return result


class AttributeStore:
    """Attributes per path, as written by the server."""

    def __init__(self) -> None:
        self._by_path: dict[LwM2mPath, dict[str, AttributeValue]] = {}

    def at(self, path: LwM2mPath) -> dict[str, AttributeValue]:
        """The attributes assigned exactly at ``path`` (what Discover shows there)."""
        return dict(self._by_path.get(path, {}))

    def write(
        self,
        path: LwM2mPath,
        changes: Mapping[str, AttributeValue | None],
        *,
        numeric: bool,
    ) -> None:
        """Apply a Write-Attributes; ``numeric`` says whether ``path`` is a numeric resource."""
        if path.is_root:
            raise _bad("Write-Attributes needs an object, instance or resource path")
        given = [name for name, value in changes.items() if value is not None]
        if any(name in VALUE_ATTRIBUTES for name in given) and not (numeric and path.depth >= 3):
            raise _bad(f"{path}: gt, lt and st apply to numeric resources only")
        merged = dict(self._by_path.get(path, {}))
        for name, value in changes.items():
            if value is None:
                merged.pop(name, None)
            else:
                merged[name] = value
        gt, lt, st = merged.get("gt"), merged.get("lt"), merged.get("st")
        if gt is not None and lt is not None:
            if not lt < gt:
                raise _bad(f"{path}: lt must be smaller than gt")
            if st is not None and not lt + 2 * st < gt:
                raise _bad(f"{path}: lt + 2*st must be smaller than gt")
        if merged:
            self._by_path[path] = merged
        else:
            self._by_path.pop(path, None)

    def forget(self, prefix: LwM2mPath) -> None:
        """Drop attributes under a deleted instance."""
        for path in [p for p in self._by_path if p.starts_with(prefix)]:
            del self._by_path[path]

    def effective(
        self,
        path: LwM2mPath,
        defaults: Callable[[], tuple[int | None, int | None]] | None = None,
    ) -> Attributes:
        """Merge object → instance → resource → resource instance; deeper levels win.

        ``defaults()`` gives (pmin, pmax) from the Server object for whatever is still unset.
        """
        merged: dict[str, AttributeValue] = {}
        for depth in range(1, path.depth + 1):
            merged.update(self._by_path.get(LwM2mPath.from_ids(*path.ids[:depth]), {}))
        pmin, pmax = defaults() if defaults is not None else (None, None)
        return Attributes(
            pmin=_int(merged.get("pmin", pmin)),
            pmax=_int(merged.get("pmax", pmax)),
            gt=_float(merged.get("gt")),
            lt=_float(merged.get("lt")),
            st=_float(merged.get("st")),
            epmin=_int(merged.get("epmin")),
            epmax=_int(merged.get("epmax")),
        )


def _int(value: AttributeValue | None) -> int | None:
    return None if value is None else int(value)


def _float(value: AttributeValue | None) -> float | None:
    return None if value is None else float(value)


def format_attributes(attributes: Mapping[str, AttributeValue]) -> list[str]:
    """Link-format parameters for Discover: ``["pmin=10", "gt=20.5"]``, in a stable order."""
    order = [*INTEGER_ATTRIBUTES, *FLOAT_ATTRIBUTES]
    result = []
    for name in sorted(attributes, key=lambda n: order.index(n) if n in order else len(order)):
        value = attributes[name]
        text = repr(value) if isinstance(value, float) and not value.is_integer() else None
        if text is None:
            text = str(int(value)) if float(value).is_integer() else str(value)
        result.append(f"{name}={text}")
    return result
