"""benchmarks/inference_cost.py: trained models take turns image by image, and the report pairs
nested with FPN by seed, beside the runs' own timings."""
import json

import pytest

import inference_cost  # benchmarks/, on sys.path through pytest.ini


def test_the_models_take_turns_on_each_image_after_one_warm_up_each():
    calls = []

    def predictor(name, detections):
        def run(batch):
            calls.append((name, batch))
            return [{"instances": [None] * detections}]
        return run

    predictors = {"a": predictor("a", 3), "b": predictor("b", 5)}
    inputs = {"a": ["a0", "a1", "a2"], "b": ["b0", "b1", "b2"]}
    times = inference_cost.time_in_turns(predictors, inputs)
    assert calls == [("a", "a0"), ("b", "b0"),  # warm-up
                     ("a", "a0"), ("b", "b0"), ("a", "a1"), ("b", "b1"), ("a", "a2"), ("b", "b2")]
    assert [t[2] for t in times["a"]] == [3, 3, 3] and [t[2] for t in times["b"]] == [5, 5, 5]
    assert all(wall >= 0 and cpu >= 0 for ts in times.values() for wall, cpu, _ in ts)
    cpu, wall, detections = inference_cost.summary(times)["b"]
    assert detections == 5 and cpu == pytest.approx(sum(t[1] for t in times["b"]) / 3)


def test_the_report_pairs_nested_with_fpn_by_seed_beside_the_runs_own_figures(tmp_path):
    per_run = {("fpn", 0): (2.0, 1.0, 100.0), ("nested", 0): (2.2, 1.2, 110.0),
               ("fpn", 1): (3.0, 1.5, 120.0), ("nested", 1): (3.0, 1.5, 120.0)}
    runs = tmp_path / "nuclei_runs" / "cpu-23min"
    runs.mkdir(parents=True)
    for (model, seed), cpu in {("fpn", 0): 3.0, ("nested", 0): 3.6, ("fpn", 1): 3.2, ("nested", 1): 3.2}.items():
        (runs / f"{model}_seed{seed}.json").write_text(json.dumps({"inference_timing": {"cpu_s_per_image": cpu}}))
    text = inference_cost.render("cpu-23min", per_run, [0, 1], 41, str(tmp_path), "cmd")
    assert "| Mask R-CNN++ (nested FPN) | 0 | 2.200 | 1.200 | 110.0 | 3.600 |" in text
    assert "- CPU s/image: +5.0 ± 7.1 % (seed 0 +10.0 %, seed 1 +0.0 %)" in text
    assert "- wall s/image: +10.0 ± 14.1 % (seed 0 +20.0 %, seed 1 +0.0 %)" in text
    assert "- the runs' own CPU s/image: +10.0 ± 14.1 % (seed 0 +20.0 %, seed 1 +0.0 %)" in text


def test_a_profile_sharing_fpn_runs_loads_them_from_their_profile(tmp_path, capsys):
    assert inference_cost.trained_in("cpu-final", "fpn") == "cpu-scale"
    assert inference_cost.trained_in("cpu-final", "nested") == "cpu-final"
    with pytest.raises(SystemExit) as exit_info:
        inference_cost.run_command(inference_cost.main, ["--profile", "cpu-final", "--seeds", "0",
                                                         "--output-root", str(tmp_path)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {tmp_path}/cpu-scale/fpn_seed0/model_final.pth: not found; train it first with "
        "tools/compare.py --profile cpu-scale --model fpn --seeds 0")
