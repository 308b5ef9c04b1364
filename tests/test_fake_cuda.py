"""Every CUDA path of attn run on the CPU with fake CUDA tensors (tests/fake_cuda.py): each
variant in each regime through the profiler, the float64 references, the dtypes, the maps, the
planner's model changes and the model capture. A CPU tensor left in a CUDA path raises
FakeTensorDeviceMismatchError here as it would on a GPU; the mutation tests at the end show it.

What only a GPU checks (fake tensors have no values and this build no CUDA runtime): the
compiled FlexAttention kernel (masked.flex_attention's `torch.compile(flex, dynamic=False)` and
`_compiled_flex(q, k, v, block_mask=...)`), autograd's own backward on CUDA, CUDA events, the
allocator's statistics, NVML, and every number that reads a value (the errors against float64).
"""
from __future__ import annotations

import copy

import pytest
import torch

from attn import measure, variants
from attn.inputs import random_qkv
from attn.masks import Mask
from attn.regimes import decode_spec
from attn.spec import AttentionSpec
from attn.variants import dense
from tests.fake_cuda import FAKE_MS, FakeTensorDeviceMismatchError, fake_cuda

pytestmark = pytest.mark.filterwarnings("ignore:Accessing the data pointer of FakeTensor")

# small, with GQA (4 query heads on 2 key/value heads) and every variant's parameter in range
SPEC = dict(seq=64, heads=4, kv_heads=2, head_dim=16, window=16, block=16, top_k=8, features=16, rank=16)


def spec_for(name: str, causal: bool, dtype: str = "bfloat16", mode: str = "forward") -> AttentionSpec:
    spec = AttentionSpec(**SPEC, causal=causal, dtype=dtype, device="cuda")
    return decode_spec(spec, 64) if mode == "decode" else spec


def runnable(name: str, spec: AttentionSpec, mode: str) -> str | None:
    var = variants.get(name)
    reasons = var.unsupported(spec, "cuda") + ([var.cannot[mode]] if mode in var.cannot else [])
    return "; ".join(reasons) or None


CASES = [(name, mode, causal) for name in variants.names() for mode in ("forward", "train", "decode")
         for causal in (False, True)]


@pytest.mark.parametrize(("name", "mode", "causal"), CASES)
def test_profile_runs_on_fake_cuda(monkeypatch, name, mode, causal):
    spec = spec_for(name, causal, mode=mode)
    why = runnable(name, spec, mode)
    if why:
        pytest.skip(f"{name} cannot run {mode} here, and says so: {why}")
    with fake_cuda(monkeypatch) as calls:
        prof = measure.profile(spec, name, budget_s=0.01, check_errors=False, mode=mode)
    assert prof.mode == mode
    assert prof.latency_ms == pytest.approx(FAKE_MS * (2 if mode == "train" else 1))
    assert calls["cuda_ms"] > 0 and calls["peak"] == 1  # CUDA events and allocator stats, faked
    assert prof.energy_j and prof.energy_j > 0  # the NVML loop ran, on the fake counter
    if name in ("sliding_window", "block_sparse"):
        assert prof.backend == "flex_attention"


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("name", variants.names())
def test_outputs_keep_the_spec_dtype_and_device(monkeypatch, name, dtype):
    causal = name != "linformer"
    spec = spec_for(name, causal, dtype)
    with fake_cuda(monkeypatch):
        q, k, v = random_qkv(spec)
        assert {t.device.type for t in (q, k, v)} == {"cuda"}
        assert {t.dtype for t in (q, k, v)} == {getattr(torch, dtype)}
        out = variants.get(name).run(q, k, v, spec)
        assert (out.device.type, out.dtype, out.shape) == ("cuda", q.dtype, q.shape)
        step = decode_spec(spec, 64)
        if "decode" not in variants.get(name).cannot:
            q, k, v = random_qkv(step)
            out = variants.get(name).decode_step(q, k, v, step)()
            assert (out.device.type, out.dtype, out.shape) == ("cuda", q.dtype, q.shape)


@pytest.mark.parametrize("name", variants.names())
def test_float64_references_build_on_cuda(monkeypatch, name):
    """The references the errors compare against (weights @ v in float64) on the inputs' device;
    the comparison itself reads values, so only its placement is checked here."""
    spec = spec_for(name, name != "linformer", "float32")
    with fake_cuda(monkeypatch):
        q, k, v = (t.double() for t in random_qkv(spec))
        rows = torch.tensor([0, 5, 63])
        w = variants.get(name).weights(q, k, spec, rows)
        assert (w.device.type, w.dtype, tuple(w.shape)) == ("cuda", torch.float64, (1, 4, 3, 64))


def test_upstream_gradient_and_leaves_get_gradients_on_cuda(monkeypatch):
    from attn.training import upstream_gradient

    spec = spec_for("dense", True, "bfloat16")
    with fake_cuda(monkeypatch):
        q, k, v = (t.requires_grad_() for t in random_qkv(spec))
        out = variants.get("dense").run(q, k, v, spec)
        g = upstream_gradient(out, spec.seed)
        assert (g.device, g.dtype) == (out.device, out.dtype)
        out.backward(g)
        assert {(t.grad.device.type, t.grad.dtype) for t in (q, k, v)} == {("cuda", torch.bfloat16)}


@pytest.mark.parametrize("name", ["sdpa", "sliding_window", "block_sparse", "topk"])
def test_maps_pool_on_cuda(monkeypatch, name):
    from attn.maps import pooled_map

    spec = spec_for(name, True, "bfloat16")
    with fake_cuda(monkeypatch):
        q, k, _ = random_qkv(spec)
        # the map's numbers are read off the device at the very end (.cpu().numpy()), which
        # fake tensors cannot give: failing there, and only there, means the pooling ran on CUDA
        with pytest.raises(RuntimeError, match=r"\.numpy\(\) is not supported"):
            pooled_map(q, k, spec, name, max_size=16)


def test_sdpa_auto_times_each_backend_through_the_cuda_timer(monkeypatch):
    spec = spec_for("sdpa", True, "bfloat16")
    with fake_cuda(monkeypatch) as calls:
        q, k, v = random_qkv(spec)
        variants.get("sdpa").run(q, k, v, spec)
        reasons = variants.get("sdpa").kernel_reasons(q, k, spec)
    assert calls["cuda_ms"] >= 6  # 1 + 5 timed calls of at least one backend, on CUDA events
    assert set(reasons) == {"cudnn", "flash", "efficient", "math"}


# -- the models: the planner's changes and the capture ---------------------------------------------
def _fake_cuda_model(name: str):
    """A preset with random weights built on CUDA inside the fake mode (moving a fake model with
    `.to("cuda")` fails: fake parameters cannot be swapped)."""
    from dataclasses import replace

    from torch._subclasses.fake_tensor import unset_fake_temporarily
    from transformers import AutoModel

    from attn.models import load_model

    with unset_fake_temporarily():  # load_model caches the model: a real one, for the other tests
        cpu = load_model(name)
        # a config of its own: the model keeps the one it is built from, and a plan with fewer
        # key/value heads writes them into it, which must not reach the cached model's
        config = copy.deepcopy(cpu.config)
    with torch.device("cuda"):
        model = AutoModel.from_config(config, attn_implementation="eager").eval()
    return replace(cpu, model=model, config=config, device="cuda")


@pytest.mark.slow  # builds a model on fake CUDA: seconds each
@pytest.mark.parametrize(("first", "rest"), [("sliding_window:4", "block_sparse:4"), ("full", "sliding_window:8")])
@pytest.mark.parametrize("activation", ["softmax", "sigmoid"])
def test_planned_model_runs_on_cuda(monkeypatch, first, rest, activation):
    """The planner's changes (a layer's mask through attn's kernels or the plan's eager path,
    key/value heads pooled to 1, sigmoid in place of softmax) on a decoder with GQA."""
    from types import SimpleNamespace

    from attn.models import apply_plan, encode, plan, plan_for

    with fake_cuda(monkeypatch):
        loaded = _fake_cuda_model("llama-gqa")
        # apply_plan copies the model so the loaded one is untouched; a deepcopy of fake tensors
        # makes them a fake mode of their own, which torch cannot mix: a fresh fake model (random
        # weights either way) is the copy here
        monkeypatch.setattr(plan, "copy", SimpleNamespace(deepcopy=lambda m: _fake_cuda_model("llama-gqa").model))
        plan_text = f"0:{first},1-{loaded.config.num_hidden_layers - 1}:{rest}"
        planned = apply_plan(loaded, plan_for(loaded, plan_text, kv_heads=1, activation=activation))
        ids, _ = encode(planned, "The cat sat on the mat because it was warm.")
        assert ids.device.type == "cuda"
        with torch.no_grad():
            if activation == "softmax":  # every plan here has a masked layer
                # a softmax layer with a mask goes to attn's kernel only when the model's mask is
                # plain causality, which is read off the device (one value a layer): fake tensors
                # have none. The kernel itself is run below (test_plan_kernels_run_on_cuda).
                with pytest.raises(torch._subclasses.fake_tensor.DataDependentOutputException):
                    planned.model(input_ids=ids)
                return
            out = planned.model(input_ids=ids)
        assert out.last_hidden_state.device.type == "cuda"


@pytest.mark.parametrize("layer", ["sliding_window:4", "block_sparse:4", "full"])
@pytest.mark.parametrize("activation", ["softmax", "sigmoid", "relu"])
def test_plan_kernels_run_on_cuda(monkeypatch, layer, activation):
    """plan_attention as transformers calls it, with no model mask, on a causal GQA layer."""
    from types import SimpleNamespace

    from attn.models.plan import PLAN_ATTR, LayerPlan, plan_attention

    kind, _, param = layer.partition(":")
    module = SimpleNamespace(is_causal=True, training=False,
                             **{PLAN_ATTR: LayerPlan(kind, int(param) if param else None, activation)})
    with fake_cuda(monkeypatch):
        q = torch.randn(1, 4, 12, 16, device="cuda", dtype=torch.bfloat16)
        k, v = (torch.randn(1, 2, 12, 16, device="cuda", dtype=torch.bfloat16) for _ in range(2))
        out, _ = plan_attention(module, q, k, v, None)
    assert (out.device.type, out.dtype, tuple(out.shape)) == ("cuda", torch.bfloat16, (1, 12, 4, 16))


@pytest.mark.slow
def test_capture_qkv_on_cuda(monkeypatch):
    from attn.models import capture_qkv

    with fake_cuda(monkeypatch):
        loaded = _fake_cuda_model("llama-gqa")
        cap = capture_qkv(loaded, "The cat sat on the mat.", layers=[0])
        layer = cap.layers[0]
        assert {t.device.type for t in (layer.q, layer.k, layer.v)} == {"cuda"}


# -- the mutation proof: a CPU tensor left in a CUDA path fails -----------------------------------
def test_fake_cuda_catches_a_cpu_tensor_mixed_in(monkeypatch):
    with fake_cuda(monkeypatch):
        x = torch.zeros(4, device="cuda")
        with pytest.raises(FakeTensorDeviceMismatchError):
            x + torch.ones(4)


def test_a_mask_left_on_the_cpu_fails_the_fake_cuda_run(monkeypatch):
    """Mutation: dense's causal mask function returns a CPU mask whatever the indices' device.
    The forward profile that passes above must then fail, on the mismatch."""
    real = dense.causal_mask

    def cpu_mask(spec):
        mask = real(spec)
        return Mask(lambda q, k: mask.fn(q, k).cpu(), mask.keys_for, mask.name)

    monkeypatch.setattr(dense, "causal_mask", cpu_mask)
    spec = spec_for("dense", True)
    with fake_cuda(monkeypatch), pytest.raises(FakeTensorDeviceMismatchError):
        measure.profile(spec, "dense", budget_s=0.01, check_errors=False)


def test_inputs_left_on_the_cpu_fail_the_fake_cuda_run(monkeypatch):
    """Mutation: the inputs are drawn but never moved to the spec's device."""
    import attn.inputs

    real = attn.inputs.random_qkv
    monkeypatch.setattr(measure, "random_qkv",
                        lambda spec, temperature=1.0: (real(spec)[0],) + real(spec, device="cpu")[1:])
    spec = spec_for("sdpa", False)
    with fake_cuda(monkeypatch), pytest.raises((FakeTensorDeviceMismatchError, RuntimeError)):
        measure.profile(spec, "sdpa", budget_s=0.01, check_errors=False)


# -- regressions the fake CUDA found -------------------------------------------------------------
@pytest.mark.parametrize("causal", [False, True])
def test_block_sparse_mask_compares_its_layout_on_the_indices_device(monkeypatch, causal):
    """block_sparse's layout was drawn on the CPU and indexed with FlexAttention's CUDA indices:
    the block mask could not be built on a GPU (a CPU tensor indexed by CUDA tensors)."""
    from torch.nn.attention.flex_attention import create_block_mask

    from attn.variants.block_sparse import block_sparse_mask

    spec = spec_for("block_sparse", causal)
    with fake_cuda(monkeypatch):
        fn = block_sparse_mask(spec, "cuda").fn
        rows, keys = torch.arange(64, device="cuda"), torch.arange(64, device="cuda")
        assert fn(rows[:, None], keys[None, :]).device.type == "cuda"
        block_mask = create_block_mask(lambda b, h, q, kv: fn(q, kv), None, None, 64, 64,
                                       device="cuda", BLOCK_SIZE=16)
        assert block_mask.kv_num_blocks.device.type == "cuda"
