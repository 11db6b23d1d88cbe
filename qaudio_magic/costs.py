"""What a request costs, estimated from the model registry's prices (``models.Price``).

Prices live in the registry, each with its source, the date it was checked and whether
a primary source confirms it; this module only multiplies. An estimate is **unknown**
(``amount`` None) when the model, its region or a part the request uses (audio input,
output text ...) has no price — never silently zero. Self-hosted routes (``openai:``,
``local:``) have no price list.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .models import CHECKED, lookup

__all__ = ["Cost", "estimate_cost", "region_id", "total_cost"]

_SYMBOLS = {"USD": "$", "CNY": "¥"}


@dataclass(frozen=True)
class Cost:
    """An estimated cost; ``amount`` None means unknown, and ``why`` says why."""

    amount: float | None
    currency: str | None = None
    source: str = ""
    checked: str = CHECKED
    verified: bool = False
    why: str = ""

    @property
    def known(self) -> bool:
        return self.amount is not None

    def __str__(self) -> str:
        if self.amount is None:
            return "unknown"
        if not self.amount:
            return "0" + (f" ({self.why})" if self.why else "")
        symbol = _SYMBOLS.get(self.currency or "")
        if symbol:
            text = symbol + f"{self.amount:.6f}".rstrip("0").rstrip(".")
        else:
            text = f"{self.amount:.6f} {self.currency or ''}".rstrip()
        return text if self.verified else text + " (unverified)"

    def describe(self) -> str:
        """The amount with where its price came from."""
        if self.amount is None:
            return f"unknown ({self.why})" if self.why else "unknown"
        return f"{self} · price from {self.source or 'the registry'}, checked {self.checked}"


def region_id(region: str | None) -> str | None:
    """A region id (``cn-beijing`` ...) for a setting that may be an alias (``cn``)."""
    if not region:
        return None
    from .regions import RegionError, resolve_region

    try:
        return resolve_region(region).id
    except RegionError:
        return None


def estimate_cost(
    model: str,
    region: str | None,
    *,
    text_in: int | None = 0,
    audio_in: int | None = 0,
    text_out: int | None = 0,
    seconds: float = 0.0,
) -> Cost:
    """The cost of one request's token counts (and audio seconds, for per-second models)."""
    spec = lookup(model)
    if spec.route in ("openai", "local"):
        return Cost(None, why="self-hosted: no price list")
    where = region_id(region)
    price = spec.price(where) if where else None
    if price is None:
        return Cost(None, why=f"no price for {model} in {where or 'this region'} in the registry")
    if spec.per_second_billing:
        amount = price.estimate(seconds=seconds)
    else:
        amount = price.estimate(
            text_in=text_in or 0, audio_in=audio_in or 0, text_out=text_out or 0
        )
    if amount is None:
        return Cost(
            None,
            price.currency,
            price.source,
            price.checked,
            price.verified,
            why="a part of the request has no price",
        )
    return Cost(amount, price.currency, price.source, price.checked, price.verified)


def total_cost(costs: Iterable[Cost]) -> Cost:
    """The sum of ``costs``: unknown if any is unknown or they mix currencies (nothing
    paid, e.g. a cached answer, adds nothing and has no currency to mix)."""
    items = list(costs)
    if any(c.amount is None for c in items):
        return Cost(None, why=next(c.why for c in items if c.amount is None))
    paid = [c for c in items if c.amount]
    if not paid:
        return Cost(0.0, verified=True, why=items[0].why if items else "")
    currencies = {c.currency for c in paid}
    if len(currencies) > 1:
        return Cost(None, why="several currencies")
    first = paid[0]
    return Cost(
        sum(c.amount or 0.0 for c in paid),
        first.currency,
        first.source,
        first.checked,
        all(c.verified for c in paid),
    )
