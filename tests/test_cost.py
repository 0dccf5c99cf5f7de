"""The cost analyser against the MobileNet paper's tables, and against hooks on the real models."""

import pytest

from mobilenets import cost, create_model, hook_costs, separable_vs_standard

# (model, options) → (mult-adds, params), 1000 classes, 224 unless stated. Paper figure in the comment.
GOLDEN = [
    ("mobilenet_v1", {}, 568_740_352, 4_210_088),  # Table 8: 569M, 4.2M
    ("mobilenet_v1", {"width_mult": 0.75}, 325_400_448, 2_569_144),  # Table 6: 325M, 2.6M
    ("mobilenet_v1", {"width_mult": 0.5}, 149_497_088, 1_320_648),  # Table 6: 149M, 1.3M
    ("mobilenet_v1", {"width_mult": 0.25}, 41_030_272, 464_600),  # Table 6: 41M, 0.5M
    ("mobilenet_v1", {"resolution": 192}, 418_121_728, 4_210_088),  # Table 7: 418M
    ("mobilenet_v1", {"resolution": 160}, 290_675_200, 4_210_088),  # Table 7: 290M
    ("mobilenet_v1", {"resolution": 128}, 186_400_768, 4_210_088),  # Table 7: 186M
    ("conv_mobilenet_v1", {}, 4_867_293_184, 29_282_120),  # Table 4: 4866M, 29.3M
    ("shallow_mobilenet_v1", {}, 307_323_392, 2_876_328),  # Table 5: 307M, 2.9M
    ("mobilenet_v1", {"width_mult": 0.5, "resolution": 160}, 76_524_800, 1_320_648),  # Table 9: 76M, 1.32M
]


@pytest.mark.parametrize("name, options, mult_adds, params", GOLDEN)
def test_paper_figures_exactly(name, options, mult_adds, params):
    report = cost(name, **options)
    assert report.mult_adds == mult_adds
    assert report.params == params


def test_params_with_batchnorm():
    assert cost("mobilenet_v1").params_with_norm == 4_231_976
    assert cost("mobilenet_v1").params_with_norm == sum(
        p.numel() for p in create_model("mobilenet_v1").parameters()
    )


def test_table_2_breakdown_by_type():
    shares = {
        e["type"]: (round(e["mult_adds_percent"], 2), round(e["weights_percent"], 2))
        for e in cost("mobilenet_v1").by_type()
    }
    assert shares == {
        "Conv 1×1": (94.86, 74.59),
        "Conv DW 3×3": (3.06, 1.06),
        "Conv 3×3": (1.91, 0.02),  # the paper prints 1.19%, a transposition (its column sums to 99.29%)
        "FC": (0.18, 24.33),
    }


def test_table_3_single_layer():
    layer = separable_vs_standard(512, 512, 3, 14)
    assert round(layer.standard_mult_adds / 1e6) == 462 and round(layer.standard_params / 1e6, 2) == 2.36
    assert (
        round(layer.separable_mult_adds / 1e6, 1) == 52.3 and round(layer.separable_params / 1e6, 2) == 0.27
    )
    narrow = separable_vs_standard(384, 384, 3, 14)  # α = 0.75
    assert (
        round(narrow.separable_mult_adds / 1e6, 1) == 29.6 and round(narrow.separable_params / 1e6, 2) == 0.15
    )
    small = separable_vs_standard(384, 384, 3, 10)  # ρ = 0.714: D_F = 10
    assert (
        round(small.separable_mult_adds / 1e6, 1) == 15.1 and round(small.separable_params / 1e6, 2) == 0.15
    )


def test_separable_ratio_equals_formula():
    report = cost("mobilenet_v1")
    assert len(report.separable) == 13
    for comparison in report.separable:
        assert comparison.ratio == pytest.approx(1 / comparison.out_channels + 1 / 9, rel=1e-12)
        assert comparison.ratio == pytest.approx(comparison.formula, rel=1e-12)
    # with a depth multiplier the pointwise layer reads more channels than the standard conv would
    dm2 = cost("mobilenet_v1", depth_multiplier=2).separable[0]
    assert dm2.ratio > dm2.formula


def test_full_conv_twin_ratio():
    ratio = cost("conv_mobilenet_v1").mult_adds / cost("mobilenet_v1").mult_adds
    assert ratio == pytest.approx(8.558, abs=1e-3)


# Every model under several option sets: test_every_model.py. These add wider and odd sizes.
HOOK_CASES = [
    ("mobilenet_v1", {"width_mult": 0.25, "depth_multiplier": 2, "resolution": 193, "padding": "same"}),
    ("mobilenet_v1", {"width_mult": 0.75, "resolution": 161}),
    ("mobilenet_v1", {"features_only": True, "resolution": 128}),
    ("mobilenet_v2", {"width_mult": 1.4, "resolution": 97, "padding": "same"}),
    ("mobilenet_v2", {"width_mult": 0.35, "resolution": 96}),
    ("mobilenet_v3_large", {"minimalistic": True, "resolution": 193, "padding": "same"}),
    ("mobilenet_v3_small", {"width_mult": 0.75, "resolution": 160}),
    ("mobilenet_v1", {"padding": "keras", "resolution": 113}),  # Keras's fixed padding at an odd size
    ("mobilenet_v3_large", {"padding": "keras", "resolution": 113}),
]


@pytest.mark.parametrize("name, options", HOOK_CASES)
def test_analytic_costs_equal_hooks_on_the_real_model(name, options):
    model = create_model(name, **options)
    report = cost(name, **options)
    measured = hook_costs(model, report.resolution)
    assert [r.name for r in report.rows] == list(measured)  # same layers in the same order
    for row in report.rows:
        got = measured[row.name]
        assert (row.mult_adds, row.params, row.output_shape) == (
            got["mult_adds"],
            got["params"],
            got["output_shape"],
        ), row.name
    assert report.params_with_norm == sum(p.numel() for p in model.parameters())


def test_cost_accepts_name_config_or_model():
    model = create_model("mobilenet_v1", width_mult=0.5)
    assert (
        cost(model).mult_adds
        == cost(model.config).mult_adds
        == cost("mobilenet_v1", width_mult=0.5).mult_adds
    )
    assert cost(model, resolution=160).mult_adds == 76_524_800
    with pytest.raises(TypeError, match="ModelConfig"):
        cost(42)
