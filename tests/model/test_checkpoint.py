import dataclasses

import pytest
import torch

from medal.model import CheckpointError, build_model, file_hash, load_checkpoint, save_checkpoint


def test_round_trip_restores_weights_and_config(tmp_path, tiny_model_cfg):
    net = build_model(tiny_model_cfg, out_channels=3)
    path = save_checkpoint(tmp_path / "m.pt", net, tiny_model_cfg, in_channels=1, out_channels=3, meta={"epoch": 4})
    back, cfg, payload = load_checkpoint(path, expected=tiny_model_cfg)
    assert cfg == tiny_model_cfg and payload["meta"]["epoch"] == 4
    for (k, a), (k2, b) in zip(net.state_dict().items(), back.state_dict().items()):
        assert k == k2
        torch.testing.assert_close(a, b)
    assert len(file_hash(path)) == 64


def test_config_mismatch_is_a_clear_error(tmp_path, tiny_model_cfg):
    net = build_model(tiny_model_cfg, out_channels=3)
    path = save_checkpoint(tmp_path / "m.pt", net, tiny_model_cfg, in_channels=1, out_channels=3)
    other = dataclasses.replace(tiny_model_cfg, dropout=0.5, placement="decoder")
    with pytest.raises(CheckpointError, match=r"m\.pt: model config does not match.*dropout: checkpoint 0.25 vs expected 0.5"):
        load_checkpoint(path, expected=other)


def test_bad_files(tmp_path, tiny_model_cfg):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"junk\.pt: not a readable checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="expected format 'medal-checkpoint/1'"):
        load_checkpoint(tmp_path / "foreign.pt")


def test_pickled_code_is_refused(tmp_path):
    """weights_only=True: a checkpoint that would run code on load is rejected, the code never runs."""
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"format": "medal-checkpoint/1", "x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="refused: the file holds Python objects") as err:
        load_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()
    assert "weights_only=False" not in str(err.value) and "set to False" not in str(err.value)  # no unsafe advice
