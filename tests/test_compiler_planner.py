"""The compiler's memory plan: invariants checked independently of the planner (on random graphs and
the zoo), the arena against TFLite Micro's, and the arena as the only RAM in the C library."""

from __future__ import annotations

import re

import numpy as np
import pytest
from compiler_zoo import MODELS, needs_arm

from compilers.build import load_compiled, load_summary
from compilers.ir import Graph, Op, Tensor
from compilers.planner import plan_memory

# ---- the memory plan ----------------------------------------------------------------------------


def lifetimes(graph: Graph) -> dict[str, tuple[int, int]]:
    """(op that writes it, last op that reads it) per tensor, from the graph alone."""
    live = {graph.input: [-1, -1]}
    for step, op in enumerate(graph.ops):
        for name in op.inputs:
            live[name][1] = step
        live[op.output] = [step, step]
    live[graph.output][1] = len(graph.ops)
    return {name: (a, b) for name, (a, b) in live.items()}


def check_plan(graph: Graph, plan) -> None:
    """Invariants of a memory plan, each checked without the planner's own bookkeeping where possible."""
    sizes = {name: t.size for name, t in graph.tensors.items()}
    assert set(plan.offsets) == set(graph.tensors)  # every tensor has a place
    assert all(plan.offsets[n] >= 0 and plan.offsets[n] + sizes[n] <= plan.arena_bytes for n in sizes)

    # buffers: same offset for the tensors sharing one, big enough, and no two alive at once overlap
    placed = []
    for b in plan.buffers:
        offset = plan.offsets[b.tensors[0]]
        assert all(plan.offsets[n] == offset for n in b.tensors)
        assert all(sizes[n] <= b.size for n in b.tensors)
        placed.append((offset, b))
    assert sorted(n for b in plan.buffers for n in b.tensors) == sorted(graph.tensors)
    assert plan.arena_bytes == max(offset + b.size for offset, b in placed)
    for i, (oa, a) in enumerate(placed):
        for ob, b in placed[i + 1 :]:
            if not (a.last < b.first or b.last < a.first):
                assert oa + a.size <= ob or ob + b.size <= oa, f"{a.tensors} and {b.tensors} overlap while alive"

    # simulate the arena: a distinct byte pattern per tensor (a reshape keeps its input's bytes);
    # every op must find its inputs intact when it runs, and the output must survive to the end
    rng = np.random.default_rng(0)
    arena = np.zeros(plan.arena_bytes, np.uint8)
    pattern = {graph.input: rng.integers(0, 256, sizes[graph.input], dtype=np.uint8)}

    def write(name: str) -> None:
        arena[plan.offsets[name] : plan.offsets[name] + sizes[name]] = pattern[name]

    def intact(name: str) -> bool:
        return np.array_equal(arena[plan.offsets[name] : plan.offsets[name] + sizes[name]], pattern[name])

    write(graph.input)
    for step, op in enumerate(graph.ops):
        for name in op.inputs:
            assert intact(name), f"op {step} ({op.kind}) reads {name!r}, already overwritten"
        if op.kind == "reshape":
            pattern[op.output] = pattern[op.inputs[0]]
        else:
            pattern[op.output] = rng.integers(0, 256, sizes[op.output], dtype=np.uint8)
        write(op.output)
    assert intact(graph.output)


def random_graph(rng: np.random.Generator, n_ops: int) -> Graph:
    """A random DAG of the op kinds the planner treats differently: new buffers (conv, concat),
    aliases (reshape) and in-place candidates (add); inputs drawn from recent tensors so some die at
    once and some are read again much later."""
    shapes = [(1, 4, 4, 2), (1, 4, 4, 3), (1, 2, 2, 8), (1, 8, 8, 1), (1, 3, 5, 7)]
    tensors = {"x": Tensor("x", shapes[int(rng.integers(len(shapes)))])}
    ops: list[Op] = []
    names = ["x"]
    for i in range(n_ops):
        a = names[-1] if rng.random() < 0.5 else names[int(rng.integers(max(0, len(names) - 5), len(names)))]
        out = f"t{i}"
        kind = str(rng.choice(["conv", "add", "reshape", "concat"], p=[0.35, 0.3, 0.15, 0.2]))
        same = [n for n in names if tensors[n].shape == tensors[a].shape]
        if kind == "add" and len(same) > 1:
            b = same[int(rng.integers(len(same)))]
            ops.append(Op("add", out, [a, b], out))
            shape = tensors[a].shape
        elif kind == "reshape":
            ops.append(Op("reshape", out, [a], out))
            shape = (1, tensors[a].size)
        elif kind == "concat":
            b = names[int(rng.integers(len(names)))]
            ops.append(Op("concat", out, [a, b], out, axis=1))
            shape = (1, tensors[a].size + tensors[b].size)
        else:
            ops.append(Op("conv", out, [a], out))
            shape = shapes[int(rng.integers(len(shapes)))]
        tensors[out] = Tensor(out, shape)
        names.append(out)
    return Graph(input="x", output=names[-1], tensors=tensors, ops=ops)


def test_plan_invariants_on_random_graphs():
    rng = np.random.default_rng(0)
    reused = in_place = 0
    for _ in range(40):
        graph = random_graph(rng, int(rng.integers(3, 25)))
        plan = plan_memory(graph)
        check_plan(graph, plan)
        reused += plan.arena_bytes < sum(b.size for b in plan.buffers)
        in_place += sum(len(b.tensors) > 1 for b in plan.buffers)
    assert reused > 20 and in_place > 20  # the graphs exercise reuse and aliasing, not just side by side


@pytest.mark.parametrize("name", MODELS)
def test_plan_invariants_on_models(zoo, name):
    compiled = zoo.compiled(name)
    check_plan(compiled.graph, compiled.plan)


@pytest.mark.parametrize("name", MODELS)
def test_arena_not_larger_than_tflm(zoo, name):
    pytest.importorskip("tflite_micro")
    from compilers.verify import run_tflm

    compiled = zoo.compiled(name)
    tflite = (compiled.dir / "model.tflite").read_bytes()
    arena = max(4 * compiled.plan.arena_bytes, 64 * 1024) + 64 * 1024
    _, alloc = run_tflm(tflite, zoo.quantized_inputs(name)[:2], arena)
    assert alloc["tflm_arena_head_bytes"], alloc
    assert compiled.plan.arena_bytes <= alloc["tflm_arena_head_bytes"]


@pytest.mark.parametrize("name", MODELS)
def test_arena_in_c_and_artifacts(zoo, name):
    compiled = zoo.compiled(name)
    header = (compiled.dir / "c" / "model.h").read_text()
    assert int(re.search(r"#define NF_ARENA_SIZE (\d+)", header).group(1)) == compiled.plan.arena_bytes
    words = int(re.search(r"static int32_t nf_arena_words\[(\d+)\];", (compiled.dir / "c" / "model.c").read_text())[1])
    assert words * 4 == compiled.plan.arena_bytes  # buffers are word-aligned, so no slack
    assert load_summary(compiled.dir)["arena_bytes"] == compiled.plan.arena_bytes
    assert load_compiled(compiled.dir).plan.arena_bytes == compiled.plan.arena_bytes


def test_a_folder_from_another_compiler_version_asks_to_compile_again(zoo, tmp_path):
    """verify checks the library this compiler writes (its harnesses, its kernels); a folder written by
    another version says so in one sentence instead of failing inside a harness."""
    import json
    import shutil

    from knowledge.errors import NanofactoryError

    folder = shutil.copytree(zoo.compiled("student").dir, tmp_path / "compiled")
    summary = json.loads((folder / "compile.json").read_text())
    (folder / "compile.json").write_text(json.dumps({**summary, "compiler": "0" * 16}))
    with pytest.raises(NanofactoryError, match="another version of Nanofactory's compiler; compile it again"):
        load_compiled(folder)


@needs_arm
@pytest.mark.parametrize("name", ["student", "softmax_head"])
def test_arena_is_the_only_ram_on_cortex_m(zoo, name):
    from compilers.verify import arm_sizes

    compiled = zoo.compiled(name)
    m4 = arm_sizes(compiled.dir / "c")["cortex-m4"]
    assert m4["bss"] == compiled.plan.arena_bytes and m4["data"] == 0
