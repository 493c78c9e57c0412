"""Routing of arriving requests to instances; each policy is a small registered class."""
from __future__ import annotations

from typing import Sequence

from .registry import Registry

ROUTERS = Registry["Router"]("routing policy")


class Router:
    name = "base"

    def __init__(self, instances: Sequence) -> None:
        self.instances = instances

    def pick(self, rid: int) -> int:
        raise NotImplementedError


@ROUTERS.register("round_robin")
class RoundRobin(Router):
    def __init__(self, instances: Sequence) -> None:
        super().__init__(instances)
        self._next = 0

    def pick(self, rid: int) -> int:
        i = self._next % len(self.instances)
        self._next += 1
        return i
