"""A set that remembers only its most recent members: for bookkeeping a long-running bot must not
let grow without end (dead message ids and the like)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterator, Set
from typing import TypeVar

K = TypeVar("K", bound=Hashable)


class RecentSet(Set[K]):
    """Holds at most ``capacity`` members; adding one more forgets the oldest. Compares like a set."""

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError("capacity must be positive")
        self.capacity = capacity
        self._items: OrderedDict[K, None] = OrderedDict()

    def add(self, item: K) -> None:
        self._items[item] = None
        self._items.move_to_end(item)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def discard(self, item: K) -> None:
        self._items.pop(item, None)

    def __contains__(self, item: object) -> bool:
        return item in self._items

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[K]:
        return iter(self._items)
