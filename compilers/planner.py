"""Static memory plan: where every int8 activation lives in one arena, before anything runs.

Tensor lifetimes follow the execution order. Buffers are placed greedily, largest first,
at the lowest offset that overlaps no placed buffer alive at the same time: TFLite
Micro's GreedyMemoryPlanner, without its 16-byte alignment padding, and with two things it
does not do: a reshape's output is its input (no copy), and an add writes over an input
that dies with it. Several placement orders are tried and the smallest arena is kept. The
result is exact: the arena of the generated C library is this plan's size, and the NAS
cost model calls the same function.
"""

from __future__ import annotations

from dataclasses import dataclass

from compilers.ir import Graph

ALIGN = 4  # word-aligned buffers; int8 kernels need no more


@dataclass(frozen=True)
class Buffer:
    tensors: tuple[str, ...]  # tensors sharing this memory (a reshape chain, an in-place add)
    size: int
    first: int  # index of the op that writes it (-1: the graph input, copied in before op 0)
    last: int  # index of the last op that reads it (len(ops): the output, copied out after)


@dataclass(frozen=True)
class MemoryPlan:
    arena_bytes: int
    offsets: dict[str, int]  # tensor name -> byte offset in the arena
    buffers: tuple[Buffer, ...]

    def as_dict(self) -> dict:
        return {"arena_bytes": self.arena_bytes, "offsets": dict(self.offsets)}


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def buffers(graph: Graph) -> list[Buffer]:
    """Tensors grouped into buffers with lifetimes, in-place ops merged."""
    n_ops = len(graph.ops)
    group: dict[str, list[str]] = {graph.input: [graph.input]}
    owner: dict[str, str] = {graph.input: graph.input}
    first: dict[str, int] = {graph.input: -1}
    last: dict[str, int] = {graph.input: -1}

    def touch(name: str, step: int) -> None:
        root = owner[name]
        last[root] = max(last[root], step)

    for step, op in enumerate(graph.ops):
        for name in op.inputs:
            touch(name, step)
        root = None
        if op.kind == "reshape":
            root = owner[op.inputs[0]]
        elif op.kind == "add":
            # write over an input nothing reads later (its last use is this op, so far)
            for name in op.inputs:
                candidate = owner[name]
                later = any(candidate == owner.get(n) for later_op in graph.ops[step + 1:] for n in later_op.inputs)
                if not later and candidate != owner.get(graph.output):
                    root = candidate
                    break
        if root is None:
            root = op.output
            group[root] = []
            first[root] = step
            last[root] = step
        group[root].append(op.output)
        owner[op.output] = root
    last[owner[graph.output]] = n_ops
    return [Buffer(tuple(names), _align(graph.tensors[root].size), first[root], last[root])
            for root, names in group.items()]


def _place(bufs: list[Buffer]) -> tuple[int, list[int]]:
    offsets: list[int | None] = [None] * len(bufs)
    placed: list[int] = []
    for i in range(len(bufs)):
        b = bufs[i]
        live = sorted((offsets[j], bufs[j].size) for j in placed
                      if not (bufs[j].last < b.first or b.last < bufs[j].first))
        offset = 0
        for start, size in live:
            if offset + b.size <= start:
                break
            offset = max(offset, start + size)
        offsets[i] = offset
        placed.append(i)
    return max(o + b.size for o, b in zip(offsets, bufs)), offsets


ORDERS = {
    "size": lambda b: (-b.size, b.first),
    "first_use": lambda b: (b.first, -b.size),
    "lifetime": lambda b: (-(b.last - b.first), -b.size),
    "area": lambda b: (-b.size * (b.last - b.first + 1), b.first),
}


def plan_memory(graph: Graph) -> MemoryPlan:
    """The smallest arena over the placement orders; ties go to TFLM's size-first order."""
    bufs = buffers(graph)
    best = None
    for key in ORDERS.values():
        ordered = sorted(bufs, key=key)
        size, offsets = _place(ordered)
        if best is None or size < best[0]:
            best = (size, ordered, offsets)
    size, ordered, offsets = best
    tensor_offsets = {name: off for b, off in zip(ordered, offsets) for name in b.tensors}
    return MemoryPlan(arena_bytes=size, offsets=tensor_offsets, buffers=tuple(ordered))
