"""The pure-torch core against plain, independent statements of the equations."""
import pytest
import torch

from masactrl_suite.attention import (SD1_LAYERS, SDXL_LAYERS, BatchLayout, BatchLayoutError,
                                      MutualAttentionSchedule, MutualSelfAttentionControl, ScheduleError,
                                      mutual_self_attention, step_index)


def reference_mutual_attention(q, k, v, heads, sources, chunks):
    """The paper's equation, one image at a time with an explicit softmax matrix:
    out_i = softmax(q_i k_s^T / sqrt(d)) v_s, with s the source of image i in the same chunk."""
    rows, tokens, width = q.shape
    per, d = rows // chunks, width // heads
    out = torch.empty_like(q)
    for c in range(chunks):
        for i in range(per):
            s = max(x for x in sources if x <= i)
            row, src = c * per + i, c * per + s
            for h in range(heads):
                cols = slice(h * d, (h + 1) * d)
                attn = torch.softmax(q[row, :, cols] @ k[src, :, cols].T / d ** 0.5, dim=-1)
                out[row, :, cols] = attn @ v[src, :, cols]
    return out


def random_qkv(rows, tokens=24, heads=4, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(rows, tokens, heads * d, generator=g, dtype=torch.float64) for _ in range(3)]


@pytest.mark.parametrize("sources,per,chunks", [((0,), 2, 2), ((0,), 4, 2), ((0, 2), 5, 2), ((0,), 3, 1),
                                                ((0, 1), 3, 3)])
def test_mutual_attention_matches_the_equations(sources, per, chunks):
    q, k, v = random_qkv(per * chunks)
    layout = BatchLayout(sources)
    out = mutual_self_attention(q, k, v, 4, layout.gather_index(per, chunks, "cpu"))
    torch.testing.assert_close(out, reference_mutual_attention(q, k, v, 4, sources, chunks), rtol=0, atol=1e-12)


@pytest.mark.parametrize("sources,per,chunks", [((0,), 2, 2), ((0,), 4, 2), ((0, 2), 4, 2), ((0,), 3, 1),
                                                ((0, 3), 6, 1)])
def test_runs_of_a_source_and_its_targets_attend_in_place(sources, per, chunks):
    """The grouped form (queries of a run concatenated, the source's k/v read in place) on any kernel."""
    q, k, v = random_qkv(per * chunks, seed=2)
    layout = BatchLayout(sources)
    calls = []

    def kernel(q_, k_, v_, heads):
        calls.append((q_.shape, k_.shape))
        return mutual_self_attention(q_, k_, v_, heads, torch.arange(q_.shape[0]))  # plain attention
    group = layout.group_size(per)
    out = mutual_self_attention(q, k, v, 4, layout.gather_index(per, chunks, "cpu"), group_size=group,
                                attention=kernel)
    torch.testing.assert_close(out, reference_mutual_attention(q, k, v, 4, sources, chunks), rtol=0, atol=1e-12)
    assert calls == [((per * chunks // group, group * 24, 32), (per * chunks // group, 24, 32))]


def test_group_size_only_for_equal_runs():
    assert BatchLayout().group_size(2) == 2 and BatchLayout().group_size(5) == 5
    assert BatchLayout.parse("0,2").group_size(4) == 2 and BatchLayout.parse("0,2,4").group_size(6) == 2
    assert BatchLayout.parse("0,2").group_size(5) is None and BatchLayout.parse("0,3").group_size(5) is None
    assert BatchLayout.parse("0,1").group_size(3) is None


def test_grouped_and_gathered_forms_are_bit_identical_in_float32():
    q, k, v = (t.float() for t in random_qkv(6, tokens=64, seed=3))
    rows = BatchLayout().gather_index(3, 2, "cpu")
    assert torch.equal(mutual_self_attention(q, k, v, 4, rows, group_size=3), mutual_self_attention(q, k, v, 4, rows))


def test_source_attends_to_itself_and_targets_differ_from_plain_attention():
    q, k, v = random_qkv(4)
    out = mutual_self_attention(q, k, v, 4, BatchLayout().gather_index(2, 2, "cpu"))
    plain = mutual_self_attention(q, k, v, 4, torch.arange(4))  # every row its own source
    torch.testing.assert_close(out[[0, 2]], plain[[0, 2]], rtol=0, atol=1e-12)
    assert (out[[1, 3]] - plain[[1, 3]]).abs().max() > 1e-2


def test_cond_and_uncond_in_one_call_or_two_give_identical_results():
    q, k, v = random_qkv(6, seed=1)  # [uncond x3, cond x3]
    control = MutualSelfAttentionControl(MutualAttentionSchedule(), BatchLayout(), SD1_LAYERS)
    together = control.attend(q, k, v, heads=4, chunks=2)
    apart = torch.cat([control.attend(q[:3], k[:3], v[:3], heads=4, chunks=1),
                       control.attend(q[3:], k[3:], v[3:], heads=4, chunks=1)])
    assert torch.equal(together, apart)


def test_upcast_runs_in_float32_and_returns_the_input_dtype():
    q, k, v = (t.to(torch.bfloat16) for t in random_qkv(4))
    out = mutual_self_attention(q, k, v, 4, BatchLayout().gather_index(2, 2, "cpu"), upcast=True)
    assert out.dtype == torch.bfloat16
    expected = reference_mutual_attention(*(t.double() for t in (q, k, v)), 4, (0,), 2)
    torch.testing.assert_close(out.double(), expected, rtol=0, atol=2e-2)


@pytest.mark.parametrize("text,message", [("", "starting with 0"), ("1", "starting with 0"),
                                          ("0,2,1", "increasing order"), ("zero", "separated by commas")])
def test_bad_source_indices_are_named(text, message):
    with pytest.raises(BatchLayoutError, match=message):
        BatchLayout.parse(text)


def test_batch_without_a_target_is_an_error_that_says_how_to_fix_it():
    with pytest.raises(BatchLayoutError, match="at least one target.*batch_size 2"):
        BatchLayout().source_of(1)
    with pytest.raises(BatchLayoutError, match="latent batch has 3"):
        BatchLayout.parse("0, 3").source_of(3)
    assert BatchLayout.parse("0, 2").source_of(5) == [0, 0, 2, 2, 2]


# --- steps: derived from sigma, for any sampler ---------------------------------------------------

SIGMAS = torch.tensor([14.6, 9.7, 6.2, 3.9, 2.1, 1.0, 0.4, 0.0])  # 7 steps


def test_step_of_a_call_at_each_scheduled_sigma():
    assert [step_index(float(s), SIGMAS) for s in SIGMAS[:-1]] == list(range(7))


def test_intermediate_evaluations_stay_in_their_step():
    # dpm_2 / *_sde evaluate between s[i] and s[i+1]; float32 round-off must not move a step either.
    midpoints = (SIGMAS[:-1] * SIGMAS[1:]).sqrt()
    assert [step_index(float(s), SIGMAS) for s in midpoints] == list(range(7))
    assert step_index(float(SIGMAS[3]) * (1 + 3e-6), SIGMAS) == 3
    assert step_index(float(SIGMAS[3]) * (1 - 3e-6), SIGMAS) == 3


def test_truncated_schedules_count_from_their_own_first_step():
    tail = SIGMAS[3:]  # denoise < 1 or a KSamplerAdvanced start step
    assert step_index(float(SIGMAS[3]), tail) == 0
    assert step_index(float(SIGMAS[5]), tail) == 2
    assert step_index(float(SIGMAS[2]), SIGMAS[:4]) == 2  # a KSamplerAdvanced end step


def test_step_schedule_start_end_and_interval():
    s = MutualAttentionSchedule(start_step=2, end_step=6, step_interval=2)
    assert [i for i in range(10) if s.step_is_active(i, 1.0)] == [2, 4, 6]
    assert [i for i in range(6) if MutualAttentionSchedule().step_is_active(i, 1.0)] == [4, 5]


def test_sigma_range_schedule_uses_sigma_not_step():
    s = MutualAttentionSchedule(sigma_range=(6.2, 1.0))
    assert [float(x) for x in SIGMAS if s.step_is_active(0, float(x))] == pytest.approx([6.2, 3.9, 2.1, 1.0])


@pytest.mark.parametrize("fields,field", [
    (dict(start_step=-1), "start_step"), (dict(start_step=5, end_step=3), "end_step"),
    (dict(step_interval=0), "step_interval"), (dict(start_layer=8, end_layer=4), "end_layer"),
    (dict(parts=()), "parts"), (dict(parts=("decoder", "head")), "parts"),
    (dict(sigma_range=(1.0, 5.0)), "start_percent/end_percent")])
def test_impossible_schedules_name_the_field(fields, field):
    with pytest.raises(ScheduleError, match=field.replace("/", ".")):
        MutualAttentionSchedule(**fields)


# --- layers: numbered by position in the UNet ----------------------------------------------------

def test_published_layer_counts_and_default_selection():
    assert len(SD1_LAYERS) == 16 and len(SDXL_LAYERS) == 70
    assert SD1_LAYERS.describe() == "encoder 0-5, middle 6-6, decoder 7-15"
    # start_layer 10: the last six decoder layers, output blocks 6-11 (the 32 and 64 px levels)
    assert SD1_LAYERS.active_sites(MutualAttentionSchedule()) == [("output", b, 0) for b in range(6, 12)]
    sdxl = SDXL_LAYERS.active_sites(MutualAttentionSchedule(start_layer=64))
    assert sdxl == [("output", 3, 0), ("output", 3, 1), ("output", 4, 0), ("output", 4, 1),
                    ("output", 5, 0), ("output", 5, 1)]


def test_part_selection_and_layer_errors():
    encoder_only = MutualAttentionSchedule(start_layer=0, parts=("encoder",))
    assert SD1_LAYERS.active_sites(encoder_only) == [("input", b, 0) for b in (1, 2, 4, 5, 7, 8)]
    with pytest.raises(ScheduleError, match="start_layer \\(16\\).*below 16"):
        SD1_LAYERS.active_sites(MutualAttentionSchedule(start_layer=16))
    with pytest.raises(ScheduleError, match="no layer of the selected parts"):
        SD1_LAYERS.active_sites(MutualAttentionSchedule(start_layer=10, parts=("encoder",)))


def test_mutual_passes_use_comfyuis_kernel_unless_it_is_a_generic_fallback():
    from masactrl_suite.attention.comfyui_patches import MasaCtrlAttn1
    control = MutualSelfAttentionControl(MutualAttentionSchedule(), BatchLayout(), SD1_LAYERS)
    seen = []

    def attention_xformers(q, k, v, heads, attn_precision=None, transformer_options=None):
        seen.append((attn_precision, transformer_options))
        return q

    def attention_sub_quad(q, k, v, heads, **kwargs):
        return q
    q = torch.zeros(2, 4, 8)
    MasaCtrlAttn1(control, attention_xformers).kernel({"attn_precision": torch.float32})(q, q, q, 2)
    assert seen == [(torch.float32, {"attn_precision": torch.float32})]  # as ComfyUI would call it
    assert MasaCtrlAttn1(control, attention_sub_quad).kernel({}) is None  # torch's fused attention instead
    override = {"optimized_attention_override": lambda func, *a, **k: func(*a, **k)}
    assert MasaCtrlAttn1(control, attention_sub_quad).kernel(override) is not None  # an override is honoured


def test_layer_lists_parse_and_select_exactly_their_layers():
    from masactrl_suite.attention.schedule import DiTLayerMap, parse_layers

    assert parse_layers("") is None and parse_layers(" 0, 2-3 ,5") == (0, 2, 3, 5)
    for bad in ("a", "3-1", "1-", "-2", "1.5"):
        with pytest.raises(ScheduleError, match="is not a layer or a range"):
            parse_layers(bad)
    flux = DiTLayerMap.from_depths(19, 38, "Flux")
    assert len(flux) == 57 and flux.auto_start_layer == 19 and flux.describe() == "double 0-18, single 19-56"
    picked = flux.active_sites(MutualAttentionSchedule(layers=(0, 1, 17, 18, 25, 53)))
    assert picked == [("double_block", 0), ("double_block", 1), ("double_block", 17), ("double_block", 18),
                      ("single_block", 6), ("single_block", 34)]
    assert flux.active_sites(MutualAttentionSchedule(layers=(0, 25), parts=("single",))) == [("single_block", 6)]
    with pytest.raises(ScheduleError, match="layers lists 57, past this model's last transformer block layer .56."):
        flux.active_sites(MutualAttentionSchedule(layers=(3, 57)))
    assert DiTLayerMap.from_depths(38, 0, "SD3").auto_start_layer == 19
    assert SD1_LAYERS.auto_start_layer == 10 and SDXL_LAYERS.auto_start_layer == 44
