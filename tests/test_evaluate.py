import json

import numpy as np
import pytest
import torch

from gombnet.errors import GombnetError
from gombnet.evaluate import evaluate_image, evaluate_model
from gombnet.nn.train import TrainConfig, train


def test_perfect_prediction_scores_one(tiny_wsse):
    from gombnet.data import read_dataset

    ds = read_dataset(tiny_wsse)
    i = int(ds.indices("all")[0])
    truth = ds.masks[i].astype(np.float32)
    # branches swapped: the evaluation must find the one assignment that undoes the swap
    swapped = np.concatenate([truth[3:], truth[:3]])
    result = evaluate_image(swapped, ds.masks[i], ds.columns_of(i), n_layers=2, class_names=ds.class_names,
                            pixel_size_angstrom=ds.pixel_size_angstrom(i))
    assert result["layer_perm"] == [1, 0]
    assert result["pixel"]["mean_iou"] == pytest.approx(1.0)
    overall = result["atoms"]["overall"]
    # disks centred on the columns give back the columns (up to disks cut by the border)
    assert overall["recall"] > 0.9 and overall["precision"] > 0.9
    assert overall["rmse_angstrom"] < 0.05
    # per column: the scored ones (away from the border) and how far each one's atom was
    errors = result["column_errors"]
    n_scored = overall["tp"] + overall["fn"]
    assert len(errors["index"]) == len(errors["error_px"]) == n_scored
    found = np.isfinite(errors["error_px"])
    assert found.sum() == overall["tp"]
    px = ds.pixel_size_angstrom(i)
    assert np.sqrt(np.mean(errors["error_px"][found] ** 2)) * px == pytest.approx(overall["rmse_angstrom"])
    # a layer left empty: its columns are missed (NaN), the other layer's still found
    half = truth.copy()
    half[3:] = 0
    errors = evaluate_image(half, ds.masks[i], ds.columns_of(i), n_layers=2, class_names=ds.class_names,
                            pixel_size_angstrom=px)["column_errors"]
    layer = ds.columns_of(i)["layer"][errors["index"]]
    assert np.isnan(errors["error_px"][layer == 1]).all()
    assert np.isfinite(errors["error_px"][layer == 0]).mean() > 0.9


def test_evaluate_model_on_a_tiny_run(tmp_path, tiny_graphene):
    train(tiny_graphene, tmp_path / "run", TrainConfig(epochs=1, filters=(4, 8), batch_size=3, device="cpu"))
    results = evaluate_model(tmp_path / "run", tiny_graphene, split="all")
    assert results["meta"]["n_images"] == 12
    assert 0 <= results["pixel"]["mean_iou"] <= 1
    check = results["layer_check"]
    assert check["n_images"] == 12 and 0 <= check["n_changed"] <= check["n_applied"] <= 12
    assert (check["n_moved"] > 0) == (check["n_changed"] > 0)
    sites = results["site_check"]
    assert sites["n_images"] == 12 and 0 <= sites["n_fitted"] <= 12 and sites["n_moved"] >= 0
    assert sites["n_cells_swapped"] == 0  # tiny images are one cell each: no neighbours to link
    unchecked = evaluate_model(tmp_path / "run", tiny_graphene, split="all", lattice_layers=False)
    assert "layer_check" not in unchecked and "site_check" not in unchecked
    assert not unchecked["meta"]["lattice_sites"]
    assert "site_check" not in evaluate_model(tmp_path / "run", tiny_graphene, split="all", lattice_sites=False)
    json.dumps(results, allow_nan=True)
    kept = evaluate_model(tmp_path / "run", tiny_graphene, split="all", max_images=5, keep_per_image=True)
    assert [r["image_index"] for r in kept["per_image"]] == list(range(5))
    assert "per_image" not in results
    # the network may run elsewhere (a GPU where there is one); on this CPU the numbers are the same
    on_auto = evaluate_model(tmp_path / "run", tiny_graphene, split="all", device="auto")
    if not torch.cuda.is_available():
        assert on_auto["pixel"] == results["pixel"] and on_auto["atoms"] == results["atoms"]
    with pytest.raises(GombnetError, match="unknown device"):
        evaluate_model(tmp_path / "run", tiny_graphene, device="warp-drive")


class PointwiseModel(torch.nn.Module):
    """A stand-in network whose output at a pixel depends on that pixel alone, so that it
    commutes with flips and turns; counts the images it is given (in the class: evaluation
    runs a copy of the model)."""

    size_multiple = 1
    images_seen = 0

    def __init__(self, pixel_size_angstrom):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(12.0))
        self.gombnet_config = {"n_layers": 2, "class_names": ["C"], "pixel_size_angstrom": pixel_size_angstrom,
                               "architecture": {"n_layers": 2}}

    def forward(self, x):
        type(self).images_seen += x.shape[0]
        return torch.cat([self.scale * (x - 0.55), self.scale * (0.45 - x)], dim=1)


def test_test_time_augmentation_undoes_each_transform(tiny_graphene):
    from gombnet.data import read_dataset

    ds = read_dataset(tiny_graphene)
    model = PointwiseModel(ds.pixel_size_angstrom(0))
    plain = evaluate_model(model, tiny_graphene, split="all")
    PointwiseModel.images_seen = 0
    d4 = evaluate_model(model, tiny_graphene, split="all", tta="d4")
    assert PointwiseModel.images_seen == 8 * 12  # eight passes per image
    assert d4["meta"]["tta"] == "d4"
    # an output that commutes with the transforms: the mean of the passes is the plain output
    assert d4["pixel"]["mean_iou"] == pytest.approx(plain["pixel"]["mean_iou"], abs=1e-6)
    assert d4["atoms"]["overall"]["f1"] == pytest.approx(plain["atoms"]["overall"]["f1"], abs=1e-9)


def test_mismatched_classes(tmp_path, tiny_graphene, tiny_wsse):
    train(tiny_graphene, tmp_path / "run", TrainConfig(epochs=1, filters=(4, 8), batch_size=3, device="cpu"))
    with pytest.raises(GombnetError, match="do not match"):
        evaluate_model(tmp_path / "run", tiny_wsse)
    with pytest.raises(GombnetError, match="threshold"):
        evaluate_model(tmp_path / "run", tiny_graphene, threshold=1.5)


def test_metrics_by_simulation_parameter(tmp_path, tiny_graphene):
    from gombnet.data import read_dataset
    from gombnet.evaluate import format_groups

    train(tiny_graphene, tmp_path / "run", TrainConfig(epochs=1, filters=(4, 8), batch_size=3, device="cpu"))
    results = evaluate_model(tmp_path / "run", tiny_graphene, split="all", group_by="dose_counts_per_px",
                             n_groups=3)
    groups = results["groups"]
    assert [g["n_images"] for g in groups] == [4, 4, 4]
    doses = np.sort(read_dataset(tiny_graphene).params["dose_counts_per_px"])
    # groups follow the parameter's order and cover its whole range
    assert groups[0]["low"] == pytest.approx(doses[0]) and groups[-1]["high"] == pytest.approx(doses[-1])
    assert all(a["high"] <= b["low"] for a, b in zip(groups, groups[1:]))
    assert all(0 <= g["mean_iou"] <= 1 and set(g["f1_per_layer"]) == {"layer0", "layer1"} for g in groups)
    assert "dose_counts_per_px" in format_groups(groups).splitlines()[0]
    with pytest.raises(GombnetError, match="no simulation parameter 'dose'.*dose_counts_per_px"):
        evaluate_model(tmp_path / "run", tiny_graphene, split="all", group_by="dose")
    with pytest.raises(GombnetError, match="n_groups"):
        evaluate_model(tmp_path / "run", tiny_graphene, split="all", group_by="twist_deg", n_groups=13)


def test_scoring_in_worker_processes_gives_the_same_numbers(tiny_run, tiny_graphene):
    one = evaluate_model(tiny_run, tiny_graphene, split="all")
    two = evaluate_model(tiny_run, tiny_graphene, split="all", workers=2)
    for results in (one, two):
        results["meta"].pop("seconds")
    assert json.dumps(one, sort_keys=True, default=str) == json.dumps(two, sort_keys=True, default=str)
    with pytest.raises(GombnetError, match="workers"):
        evaluate_model(tiny_run, tiny_graphene, workers=0)


def test_columns_split_between_s2_and_sse_are_found_once(tiny_wsse):
    from gombnet.data import read_dataset
    from gombnet.inference.atoms import site_grouping

    ds = read_dataset(tiny_wsse)
    i = next(int(i) for i in ds.indices("all") if (ds.columns_of(i)["class"] == 2).sum() >= 3)
    truth = ds.masks[i].astype(np.float32)
    # each Se-S column's probability split evenly between S2 and SSe: below 0.5 in both
    probs = truth.copy()
    for layer in range(2):
        s2, sse = 3 * layer + 1, 3 * layer + 2
        probs[s2] = truth[s2] + 0.45 * truth[sse]
        probs[sse] = 0.45 * truth[sse]

    def atoms(grouping):
        return evaluate_image(probs, ds.masks[i], ds.columns_of(i), n_layers=2, class_names=ds.class_names,
                              pixel_size_angstrom=ds.pixel_size_angstrom(i), grouping=grouping)["atoms"]

    def sse_as_s2(result):  # true Se-S columns found, but called S2
        return sum(c["matrix"][2][1] for c in result["confusion"].values())

    each_alone = atoms(site_grouping(ds.class_names, 2, site_groups=[]))
    together = atoms(site_grouping(ds.class_names, 2))
    weighted = atoms(site_grouping(ds.class_names, 2, class_weights={"SSe": 1.2}))
    assert each_alone["per_class"]["SSe"]["recall"] == 0 and sse_as_s2(each_alone) == 0  # missed
    assert together["per_class"]["SSe"]["recall"] == 0 and sse_as_s2(together) >= 3  # found, a tie: S2
    assert weighted["per_class"]["SSe"]["recall"] > 0.9 and weighted["overall"]["recall"] > 0.9


def test_evaluation_scores_the_refined_positions(tmp_path, tiny_run, tiny_graphene):
    import shutil

    from gombnet.nn.refiner import PositionRefiner, save_refiner

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    plain = evaluate_model(run, tiny_graphene, split="all")
    assert plain["meta"]["refined"] is False
    with pytest.raises(GombnetError, match="no position refiner"):
        evaluate_model(run, tiny_graphene, split="all", refine=True)
    save_refiner(PositionRefiner(width=4, crop_radius_px=3), run)  # untrained: moves nothing
    assert evaluate_model(run, tiny_graphene, split="all")["meta"]["refined"] is False  # off by default
    same = evaluate_model(run, tiny_graphene, split="all", refine=True)
    assert same["meta"]["refined"] is True and same["atoms"] == plain["atoms"]
    shifted = PositionRefiner(width=4, crop_radius_px=3)
    with torch.no_grad():
        shifted.head[-1].bias.copy_(torch.tensor([0.4, 0.0]))  # every atom 0.4 px to the right
    save_refiner(shifted, run, overwrite=True)
    moved = evaluate_model(run, tiny_graphene, split="all", workers=2, refine=True)  # it travels to the workers
    off = evaluate_model(run, tiny_graphene, split="all", refine=False)
    assert off["meta"]["refined"] is False and off["atoms"] == plain["atoms"]
    found = [r["atoms"]["overall"]["tp"] + r["atoms"]["overall"]["fp"] for r in (plain, moved)]
    assert moved["atoms"]["overall"]["rmse_angstrom"] != plain["atoms"]["overall"]["rmse_angstrom"]
    assert abs(found[0] - found[1]) <= 0.05 * found[0]  # atoms move; none appear or vanish (but at the border)
    assert moved["pixel"] == plain["pixel"]
