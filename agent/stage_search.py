"""The build's search stage: hardware-aware architecture search on the auto-labeled data.

Aging evolution scores candidates of the plan's search space with zero-cost proxies under
the spec's budgets (the compiler's exact arena for SRAM); the top-k by proxy and the plan's
fixed DS-CNN are then trained the same short way on the same data, and the best validation
accuracy becomes the student. Keeping the fixed student in that final comparison means the
search can only replace it with something that did better on the same footing.
"""

from __future__ import annotations

import numpy as np

from knowledge.io import write_text_atomic


def searched_student(run):
    """The student config the search chose, or None when the run has no search."""
    from tools.spaces import config_from_dict

    if not run.is_done("search"):
        return None
    result = run.result("search")
    return None if result.get("skipped") else config_from_dict(result["best_config"])


def stage_search(ctx) -> dict:
    import torch

    from agent.stages import _training_data
    from tools.cost import estimate_cost
    from tools.proxies import Batch
    from tools.search import (
        Candidate,
        pareto_png,
        pick_by_training,
        search,
        write_candidates,
    )
    from tools.sizing import DoesNotFit, budget_limits
    from tools.spaces import create_space
    from tools.train import to_input

    step = next((s for s in ctx.run.plan.steps if s.kind == "search"), None)
    if step is None:
        return {"skipped": True}
    spec, cfg = ctx.run.spec, step.search
    fixed = ctx.run.plan.step("train").student
    inputs, x, y, soft, val, val_y = _training_data(ctx)
    flash, sram = budget_limits(ctx.device, spec.budgets.flash_bytes, spec.budgets.sram_bytes)
    space = create_space(cfg.space, in_channels=fixed.in_channels, num_classes=fixed.num_classes,
                         resolutions=[fixed.input_size])
    rng = np.random.default_rng(spec.seed)
    pick = rng.choice(len(x), min(len(x), 64), replace=False)
    batch = Batch(x=to_input(x[pick]), y=torch.from_numpy(np.asarray(y[pick], np.int64)))
    fixed_cost = estimate_cost(fixed, ctx.device)
    try:
        result = search(space, ctx.device, flash, sram, spec.budgets.latency_ms, batch, cfg, seed=spec.seed,
                        progress=ctx.show_bars)
    except DoesNotFit as exc:  # nothing in the space fits, but the fixed student does (the plan checked)
        return {"skipped": False, "space": cfg.space, "note": str(exc), "best": fixed.name,
                "best_config": fixed.model_dump(), "chosen": "fixed"}
    baseline = Candidate(genome={}, config=fixed, cost=fixed_cost, scores={}, fitness=float("nan"))
    result = pick_by_training(result, x, y, soft, inputs[val], val_y, cfg, ctx.run.plan.step("train").train,
                              seed=spec.seed, progress=ctx.show_bars, extra=[baseline])
    folder = ctx.dir / "search"
    write_candidates(result, folder / "candidates.csv")
    write_text_atomic(folder / "pareto.png.b64", pareto_png(result, ctx.device, fixed=baseline))
    summary = result.summary()
    summary.update({
        "skipped": False,
        "space": cfg.space,
        "proxies": cfg.proxies,
        "chosen": "fixed" if result.best is baseline else "searched",
        "fixed": {"name": fixed.name, "cost": fixed_cost.as_dict(), "val_accuracy": baseline.val_accuracy},
    })
    return summary
