"""Job functions for attn.jobs: profiles, sweeps and big maps run in the worker process, never
on the UI thread. Arguments and results are plain dicts (with numpy arrays for maps) so they
cross the process boundary as attn.jobs.codec's JSON.

Each function imports what it runs inside itself: the pages import this module only to name the
jobs they submit, and should not load the profiler or the transformers stack, which only the
worker needs."""
from __future__ import annotations

from dataclasses import asdict

from attn.spec import AttentionSpec


def profile_task(spec: dict, variant: str, budget_s: float = 0.5, source: dict | None = None,
                 mode: str = "forward", *, report) -> dict:
    """Profile one variant in a regime; `source` is an InputSource as a dict (random inputs when
    None). For decode, `spec` is a decode step's (regimes.decode_spec); with a model's text, the
    text is the cache and its last spec["seq"] tokens the new ones."""
    from attn import measure
    from attn.sources import InputSource, make_inputs

    src = InputSource(**(source or {}))
    report.progress(0.05, f"{variant}: first call (compiles, picks a backend)")
    if src.kind == "random":  # profile checks that the spec fits before it allocates inputs
        prof = measure.profile(AttentionSpec.from_dict(spec), variant, budget_s=budget_s,
                               temperature=src.temperature, mode=mode)
    else:
        q, k, v, spec_in = make_inputs(AttentionSpec.from_dict(spec), src, mode)
        prof = measure.profile(spec_in, variant, budget_s=budget_s, inputs=(q, k, v), mode=mode)
    report.progress(1.0, "done")
    return {**prof.to_dict(), "inputs": src.describe()}


def maps_task(spec: dict, variant: str, head: int = 0, size: int = 256, reduce: str = "mean",
              temperature: float = 1.0, source: dict | None = None, mode: str = "forward", *, report) -> dict:
    """What `attn maps --json` prints (attn.maps.maps_json), in the worker: a map of tens of
    seconds must not hold a page, and it can be cancelled. The bar moves a step per percent of
    the weight rows walked (every head's); the cancel is heard after each block of rows."""
    from attn.maps import maps_json
    from attn.sources import InputSource

    src = InputSource(**source) if source else None
    shown = [-1]  # the last percent reported: a GPU walks 1000s of blocks, one message a percent

    def progress(rows: int, total: int) -> None:
        report.raise_if_cancelled()
        percent = 100 * rows // max(total, 1)
        if percent != shown[0]:
            shown[0] = percent
            report.progress(rows / max(total, 1), f"{variant}: {rows:,} of {total:,} rows of weights")

    report.progress(0.0, f"{variant}: " + ("running the model on the text" if src and src.kind != "random"
                                          else "drawing the inputs"))
    return maps_json(AttentionSpec.from_dict(spec), variant, head, size, reduce, temperature, src, mode,
                     progress=progress)


def sweep_task(spec: dict, variants: list[str], xs: list[int], axis: str = "seq",
               budget_s: float = 0.3, mode: str = "forward", ray: str | None = None, *, report) -> dict:
    """A sweep, streamed point by point. `ray` None: here, in the worker; "" or an address: one
    Ray task a point on that cluster (attn.cluster; "" is ray.init()'s own default), the points
    streamed as they finish, in any order."""
    from attn import sweep

    total = len(variants) * len(set(xs))
    done = 0

    def on_point(point: sweep.Point) -> None:
        nonlocal done
        done += 1
        report.partial(asdict(point))
        where = f" on {point.node}" if point.node else ""
        report.progress(done / total, f"{point.variant} at {axis} {point.x}{where}: {point.status}")

    if ray is not None:
        from attn import cluster

        report.progress(0.0, f"connecting to the Ray cluster at {ray or 'ray.init() default'}")
        return cluster.run_sweep_on_ray(AttentionSpec.from_dict(spec), variants, xs, axis=axis,
                                        budget_s=budget_s, on_point=on_point, cancelled=report.cancelled,
                                        mode=mode, address=ray or None)
    result = sweep.run_sweep(AttentionSpec.from_dict(spec), variants, xs, axis=axis,
                             budget_s=budget_s, on_point=on_point, cancelled=report.cancelled,
                             mode=mode)
    return result.to_dict()


def cluster_task(address: str | None = None, *, report) -> dict:
    """Join the Ray cluster at `address` (None: ray.init()'s default) and describe it."""
    from attn import cluster

    report.progress(0.1, f"connecting to {address or 'the default Ray cluster'}")
    return cluster.connect(address)


def calibrate_task(device: str = "auto", *, report) -> dict:
    from attn import calibrate

    report.progress(0.1, "matmul rates and copy bandwidth")
    return calibrate.calibrate(device, force=True).to_dict()


def model_timing_task(source: str, text: str, max_tokens: int | None = 128, repeats: int = 5,
                      device: str = "cpu", *, report) -> dict:
    """Measured time of each layer's attention and MLP modules, and peak memory (time_modules)."""
    from attn.models import load_model, time_modules

    report.progress(0.05, f"loading {source}")
    loaded = load_model(source, "eager", device)
    report.progress(0.3, f"timing {repeats} forward passes, module by module")
    return time_modules(loaded, text, repeats=repeats, max_tokens=max_tokens)


def model_implementations_task(source: str, text: str, max_tokens: int | None = 128, repeats: int = 3,
                               device: str = "cpu", *, report) -> list[dict]:
    """The same model and text under eager, sdpa and flex_attention, one row per implementation."""
    from attn.models import IMPLEMENTATIONS, compare_implementations

    report.progress(0.05, f"{', '.join(IMPLEMENTATIONS)}: flex_attention compiles first, a minute or "
                          "more on a CPU")
    # one call for all, so each row's max_abs_diff is against the same reference (the first)
    return compare_implementations(source, text, IMPLEMENTATIONS, repeats=repeats,
                                   max_tokens=max_tokens, device=device)



def _model_curve_start(source: str, device: str, key: str, first: int, what: str, report):
    """The model loaded, and an on_point that streams each point and moves the bar."""
    from attn.models import load_model

    report.progress(0.02, f"loading {source}")
    loaded = load_model(source, "eager", device)

    def on_point(point: dict, fraction: float) -> None:
        report.partial(point)
        report.progress(fraction, f"{key} {point[key]:,}: {point['status']}")

    report.progress(0.05, f"{what} at {key} {first:,} first")
    return loaded, on_point


def model_serving_task(source: str, contexts: list[int], steps: int = 8, budget_s: float = 60.0,
                       device: str = "cpu", *, report) -> dict:
    """A decoder's time to first token and per-token decode time against context, with its KV
    cache's bytes measured and predicted (attn.models.serving_curve)."""
    from attn.models import serving_curve

    loaded, on_point = _model_curve_start(source, device, "context", min(contexts),
                                          f"prefill and {steps} decode steps", report)
    return serving_curve(loaded, contexts, steps=steps, budget_s=budget_s, on_point=on_point,
                         cancelled=report.cancelled)


def model_train_step_task(source: str, seq_lens: list[int], budget_s: float = 60.0, device: str = "cpu",
                          *, report) -> dict:
    """Forward + backward through every attention layer of a model at each length: time and peak
    memory (attn.models.attention_train_step)."""
    from attn.models import attention_train_step

    loaded, on_point = _model_curve_start(source, device, "seq", min(seq_lens),
                                          "the attention layers' train step", report)
    return attention_train_step(loaded, seq_lens, budget_s=budget_s, on_point=on_point,
                                cancelled=report.cancelled)


def plan_task(source: str, layers: str, kv_heads: int | None = None, activation: str | None = None,
              text: str | None = None, max_tokens: int = 128, repeats: int = 5, measure: bool = True,
              map_tokens: int = 64, *, report) -> dict:
    """A plan evaluated (attn.models.plan_report.evaluate_plan: FLOPs and KV cache saved, MiniLM's
    drift, measured times when `measure`), with every layer's maps before and after under "maps"
    (attn.models.plan_maps, the text cut to `map_tokens`). A bad plan fails with its one line."""
    from attn.models.plan_maps import plan_maps
    from attn.models.plan_report import DEFAULT_TEXT, evaluate_plan

    result = evaluate_plan(source, layers, kv_heads, activation, text=text, max_tokens=max_tokens,
                           repeats=repeats, measure=measure,
                           progress=lambda fraction, what: report.progress(0.05 + 0.8 * fraction, what))
    report.progress(0.85, "attention maps before and after")
    result["maps"] = plan_maps(source, layers, kv_heads, activation, text or DEFAULT_TEXT, map_tokens)
    report.progress(1.0, "done")
    return result


def selftest_task(device: str = "auto", quick: bool = True, *, report) -> dict:
    """`attn selftest` in the worker, a progress step per check; the result is saved as a run of
    kind "selftest" and comes back with its run_id."""
    from attn import selftest

    def progress(done: int, total: int, name: str) -> None:
        report.progress(done / max(total, 1), f"check {min(done + 1, total)} of {total}: {name}")

    result = selftest.run_selftest(device, quick, progress=progress, cancelled=report.cancelled)
    result["run_id"] = selftest.save(result)
    return result


def story_chapter_task(number: int, *, report) -> dict:
    """One chapter of the story measured on this device (attn.story.run_chapter)."""
    from attn import story

    return story.run_chapter(number, report.progress)
