"""A new variant is one module: dropped into attn/variants/, its parameter becomes a CLI flag with
validation, a Playground field, a URL key and part of a saved run, with no other file touched."""
import json
import sys
import textwrap

import pytest

from attn import params, variants
from attn.cli import EXIT_BAD_INPUT, main
from attn.runs import RunStore
from attn.spec import AttentionSpec
from attn.variants import registry
from tests.conftest import open_app

# the whole of a throwaway variant: softmax attention with its scores divided by `tilt`
TILTED = textwrap.dedent('''
    """tilted: softmax(QK^T / (sqrt(d) * tilt)) V, a test's throwaway variant."""
    from attn.masks import causal_pairs
    from attn.params import Param
    from attn.variants import dense
    from attn.variants.registry import Variant, register

    TILT = Param("tilt", 2, "divides every score", lo=1, hi=9)


    def weights(q, k, spec, rows=None):
        return dense.weights(q / spec.tilt, k, spec, rows)


    def run(q, k, v, spec):
        return dense.run(q / spec.tilt, k, v, spec)


    VARIANT = register(Variant(
        name="tilted", title="Tilted", summary="Softmax at a temperature of its own.", exact=True,
        run=run, weights=weights, pairs=causal_pairs,
        flops=lambda spec: dense.useful_flops(spec, causal_pairs(spec)),
        extra_bytes=dense.extra_bytes, color="#0f766e", params=(TILT,), mask=dense.causal_mask))
''')


@pytest.fixture
def tilted(tmp_path, monkeypatch):
    """The module written to a folder on the package's path and picked up by the discovery that
    finds the built-in variants; the registry and the declarations are restored afterwards."""
    (tmp_path / "tilted.py").write_text(TILTED)
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(params, "_DECLARED", dict(params._DECLARED))
    monkeypatch.setattr(variants, "__path__", [*variants.__path__, str(tmp_path)])
    variants.load_all()
    yield variants.get("tilted")
    sys.modules.pop("attn.variants.tilted", None)


def test_the_new_variant_is_registered_with_its_parameter(tilted):
    assert "tilted" in variants.names() and tilted.param_names == ("tilt",)
    assert AttentionSpec().tilt == 2 and AttentionSpec(tilt=5).tilt == 5
    with pytest.raises(ValueError, match="tilt must be at most 9, got 10"):
        AttentionSpec(tilt=10)


def test_the_cli_takes_and_validates_its_parameter(tilted, capsys):
    assert main(["cost", "--variant", "tilted", "--seq", "64", "--tilt", "4", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["spec"]["tilt"] == 4
    assert main(["cost", "--variant", "tilted", "--tilt", "0", "--json"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "tilt must be at least 1, got 0" in err


def test_a_saved_run_with_its_parameter_reloads(tilted, capsys):
    argv = ["profile", "--variant", "tilted", "--seq", "32", "--heads", "2", "--head-dim", "16",
            "--tilt", "3", "--budget", "0.02", "--save", "--json"]
    assert main(argv) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["kernel_error"] < 1e-5
    run = RunStore().get(data["run_id"])
    assert run.spec["tilt"] == 3
    assert AttentionSpec.from_dict(run.spec) == AttentionSpec(seq=32, heads=2, head_dim=16, tilt=3,
                                                             device=run.spec["device"])


@pytest.mark.usefixtures("in_process_jobs")
def test_the_playground_draws_its_field_from_the_link(tilted):
    at = open_app("views/playground.py", seq="64", variants="tilted", tilt="5")
    assert not at.exception, at.exception
    field = at.number_input(key="w_tilt")
    assert field.value == 5 and "tilted" in field.label
    field.set_value(7).run()
    assert not at.exception and at.query_params["tilt"] in ("7", ["7"])  # the link follows
