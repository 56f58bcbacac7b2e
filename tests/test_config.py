import pytest

from medal.config import ConfigError, DataConfig, MedalConfig, config_hash, config_to_dict, load_config

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


def test_default_yaml_equals_built_in_defaults():
    cfg = load_config(REPO / "configs" / "default.yaml")
    assert cfg == MedalConfig()
    assert cfg.data.clip_percentiles == (0.5, 99.5)
    assert config_hash(cfg) == config_hash(MedalConfig())


def test_values_are_read(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("data:\n  normalize: minmax\n  clip_percentiles: [1, 99]\n")
    cfg = load_config(p)
    assert cfg.data == DataConfig(normalize="minmax", clip_percentiles=(1.0, 99.0))
    assert config_to_dict(cfg)["data"] == {"normalize": "minmax", "clip_percentiles": [1.0, 99.0],
                                                 "spacing": "median", "orientation": "RAS"}
    assert cfg.model == MedalConfig().model  # untouched sections keep their defaults
    with pytest.raises(Exception):
        cfg.data.normalize = "none"  # frozen


@pytest.mark.parametrize(
    "text, message",
    [
        ("data:\n  normalise: zscore\n", r"c\.yaml: data: unknown key\(s\) \['normalise'\]; valid keys: \['normalize', 'clip_percentiles', 'spacing', "
         r"'orientation'\]"),
        ("daat: {}\n", r"c\.yaml: unknown key\(s\) \['daat'\]"),
        ("data:\n  normalize: 3\n", r"c\.yaml: data\.normalize: expected str \| tuple\[str, \.\.\.\], got 3"),
        ("data:\n  normalize: [ct, fancy]\n", r"c\.yaml: data\.normalize\[1\]: 'fancy' is not one of \['ct', 'minmax', "
         r"'none', 'zscore'\]"),
        ("data:\n  normalize: []\n", r"c\.yaml: data\.normalize: an empty list"),
        ("data:\n  clip_percentiles: [1]\n", r"c\.yaml: data\.clip_percentiles: expected a list of 2 values, got 1"),
        ("data:\n  clip_percentiles: [1, 'x']\n", r"data\.clip_percentiles\[1\]: expected a number"),
        ("data:\n  normalize: fancy\n", r"c\.yaml: data\.normalize: 'fancy' is not one of"),
        ("data:\n  clip_percentiles: [90, 10]\n", r"c\.yaml: data\.clip_percentiles: need 0 <= low < high"),
        ("data: [1, 2]\n", r"c\.yaml: data: expected a mapping"),
        ("data: {normalize: [\n", r"c\.yaml: not valid YAML"),
    ],
)
def test_errors_name_file_and_key(tmp_path, text, message):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(p)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.yaml: cannot read config"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    "text, message",
    [
        ("model:\n  placement: everywhere\n", r"model\.placement: 'everywhere' is not one of \['head', 'decoder', 'monai'\]"),
        ("model:\n  strides: [2, 2]\n", r"model\.strides: need 3 positive values"),
        ("selection:\n  badge_weighting: class\n", r"selection\.badge_weighting: 'class' is not one of"),
        ("model:\n  dropout: 0\n", r"model\.dropout: must lie in \(0, 1\)"),
        ("training:\n  batch_size: 0\n", r"training\.batch_size: must be >= 1"),
        ("training:\n  patch_size: [32, 48]\n", r"training\.patch_size: expected a list of 3 values"),
        ("training:\n  device: gpu\n", r"training\.device: expected auto, cpu, cuda"),
        ("uncertainty:\n  measures: [entropy, bold]\n", r"uncertainty\.measures: \['bold'\] not valid"),
        ("uncertainty:\n  mc_samples: 1\n", r"uncertainty\.mc_samples: need >= 2"),
        ("report:\n  agreement_window_s: -600\n", r"report: agreement_window_s must be seconds >= 0"),
        ("report:\n  agreement_window_s: ten minutes\n", r"c\.yaml: report\.agreement_window_s: expected a number"),
        ("selection:\n  novelty_alpha: 0\n", r"selection\.novelty_alpha: must lie in \(0, 0\.5\], got 0"),
        ("selection:\n  novelty_alpha: 0.9\n", r"selection\.novelty_alpha: must lie in \(0, 0\.5\], got 0\.9"),
        ("selection:\n  novelty_weak_alpha: 0.05\n",
         r"selection\.novelty_weak_alpha: must be 0 \(off\) or lie in \(novelty_alpha, 0\.5\], got 0\.05 with novelty_alpha 0\.05"),
        ("selection:\n  novelty_weak_alpha: 0.6\n", r"selection\.novelty_weak_alpha: must be 0 \(off\) or lie in"),
        ("selection:\n  novelty_gap: 0.9\n", r"selection\.novelty_gap: must be 0 \(off\) or lie in \(1, 10\], got 0\.9"),
        ("selection:\n  novelty_gap: yes\n", r"selection\.novelty_gap"),
    ],
)
def test_stage_sections_check_their_values(tmp_path, text, message):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(p)


def test_variants_are_checked_against_the_base_not_stacked_on_each_other(tmp_path):
    """Two variants that are each valid over the base but clash when one is applied on top of the other (a level of
    0.1 in one, a weak level of 0.1 in the other) load, and a run's config replaced from either (as simulate does
    for each seed) does not re-check the other; a variant invalid over the base still fails at load, naming it."""
    import dataclasses

    from medal.config import variant_config

    p = tmp_path / "c.yaml"
    p.write_text("simulation:\n  strategies: [default, a10, w10]\n  variants:\n"
                 "    a10: {selection: {novelty_alpha: 0.1}}\n    w10: {selection: {novelty_weak_alpha: 0.1}}\n")
    cfg = load_config(p)
    w10 = variant_config(cfg, "w10")
    assert w10.selection.novelty_weak_alpha == 0.1 and w10.selection.novelty_alpha == 0.05
    run = dataclasses.replace(w10, training=dataclasses.replace(w10.training, seed=7))
    assert run.selection.novelty_weak_alpha == 0.1 and run.training.seed == 7
    assert variant_config(cfg, "a10").selection.novelty_alpha == 0.1
    assert cfg.simulation.variants == run.simulation.variants  # the section itself is unchanged
    p.write_text("simulation:\n  strategies: [default, bad]\n  variants:\n"
                 "    bad: {selection: {novelty_weak_alpha: 0.01}}\n")
    with pytest.raises(ConfigError, match=r"simulation\.variants\.bad\.selection\.novelty_weak_alpha: must be 0"):
        load_config(p)
