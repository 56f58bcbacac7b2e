"""The oracle value (a simulation diagnostic): it reads the ground truth that only `medal simulate` writes."""

import dataclasses

import numpy as np

from medal.config import MedalConfig
from medal.costs import CostModel
from medal.data import load_dataset, load_volume, sample_dataset, save_volume
from medal.selection.api import candidate_table
from medal.simulation.simulate import write_truth_maps


def test_oracle_value_counts_true_errors_and_needs_the_simulations_truth(tmp_path):
    ds = load_dataset(sample_dataset())
    cases = ds.cases[:2]
    scores = tmp_path / "scores"
    for case in cases:  # a model that calls everything background: its errors are the true foreground
        image = load_volume(case.image)
        (scores / case.case_id).mkdir(parents=True)
        save_volume(image.with_array(np.zeros(image.shape, np.uint8)), scores / case.case_id / "prediction.nii.gz")
    regions = dataclasses.replace(MedalConfig().regions, value="oracle_errors")

    def table():
        return candidate_table(ds, scores, regions_cfg=regions, cost_model=CostModel.default(ds.n_classes))

    t, _, skipped = table()  # a real round has no truth: every case skipped, saying why
    assert len(t) == 0 and sorted(skipped) == [c.case_id for c in cases]
    assert all("truth.nii.gz" in why and "only by `medal simulate`" in why for why in skipped.values())

    assert write_truth_maps(scores, ds, pool=[cases[0].case_id]) == [cases[0].case_id]  # pool cases only
    t, per_case, skipped = table()
    assert list(per_case) == [cases[0].case_id] and list(skipped) == [cases[1].case_id]
    truth = ds.label_map.to_index(load_volume(cases[0].label).array)
    axis = int(t["axis"][0])
    fg_per_slice = np.count_nonzero(truth, axis=tuple(a for a in range(3) if a != axis))
    np.testing.assert_array_equal(t["score"][np.argsort(t["index"])], fg_per_slice)
    np.testing.assert_array_equal(t["value_1"] + t["value_2"], t["score"])  # each error is one class's
