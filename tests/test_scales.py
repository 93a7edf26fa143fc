import pytest

from espnet_mtsk.scales import config_scales, matryoshka_scales, parse_scale, projector_keys


def test_avsr_set_is_the_full_cross_product():
    scales = matryoshka_scales("avsr", [4, 16], [2, 5])
    assert [s.id for s in scales] == ["a4_v2", "a4_v5", "a16_v2", "a16_v5"]
    assert projector_keys(scales) == {
        "a4": ("audio", 4),
        "a16": ("audio", 16),
        "v2": ("video", 2),
        "v5": ("video", 5),
    }


@pytest.mark.parametrize(
    "mode, ids",
    [
        ("asr", ["a4", "a16"]),
        ("vsr", ["v2", "v5"]),
        ("all", ["a4", "a16", "v2", "v5", "a4_v2", "a4_v5", "a16_v2", "a16_v5"]),
    ],
)
def test_single_modality_sets(mode, ids):
    assert [s.id for s in matryoshka_scales(mode, [4, 16], [2, 5])] == ids


def test_parse_round_trip():
    scale = parse_scale("a16_v5")
    assert scale.rates == (("audio", 16), ("video", 5))
    assert scale.id == "a16_v5"
    assert scale.keys() == {"audio": "a16", "video": "v5"}


@pytest.mark.parametrize("bad", ["a0", "x4", "v2_a4", "a4_a2", "a", "", "a4_"])
def test_bad_scale_ids_are_rejected(bad):
    with pytest.raises(ValueError, match="scale id"):
        parse_scale(bad)


def test_mode_needs_its_rates():
    with pytest.raises(ValueError, match="video_rates"):
        matryoshka_scales("avsr", [4], [])
    with pytest.raises(ValueError, match="mode"):
        matryoshka_scales("lipreading", [4], [2])


def test_config_scales_reads_a_model_conf_without_the_unused_rates():
    assert [s.id for s in config_scales({"mode": "asr", "audio_rates": [4, 16]})] == ["a4", "a16"]
    with pytest.raises(ValueError, match="video_rates"):
        config_scales({"mode": "avsr", "audio_rates": [4]})
