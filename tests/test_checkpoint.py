"""Checkpoints are written atomically, resume skips unreadable ones, evaluation loads strictly."""
import logging
import os

import pytest
import torch
from torch import nn

from maskrcnnpp.data import synthetic
from maskrcnnpp.engine import NucleiCheckpointer, Trainer, load_weights_strictly, read_checkpoint
from maskrcnnpp.errors import UserError
from test_trainer import register, small_cfg


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.GroupNorm(2, 4), nn.Conv2d(4, 2, 1))


def truncate(path, fraction=0.5):
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(int(size * fraction))


def test_save_is_atomic_when_the_write_dies(tmp_path, monkeypatch):
    checkpointer = NucleiCheckpointer(tiny_model(), save_dir=str(tmp_path))
    checkpointer.save("model_final", iteration=9)
    before = (tmp_path / "model_final.pth").read_bytes()

    def dying_save(obj, f):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt  # a kill in the middle of torch.save

    monkeypatch.setattr(torch, "save", dying_save)
    checkpointer.model = tiny_model(seed=1)
    with pytest.raises(KeyboardInterrupt):
        checkpointer.save("model_final", iteration=19)
    assert (tmp_path / "model_final.pth").read_bytes() == before  # old content intact
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth"
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_final.pth"]  # no temporary left
    assert read_checkpoint(str(tmp_path / "model_final.pth"))["iteration"] == 9


def test_resume_skips_a_truncated_checkpoint_for_the_newest_readable_one(tmp_path, caplog):
    checkpointer = NucleiCheckpointer(tiny_model(), save_dir=str(tmp_path))
    for name in ("model_0000009", "model_0000019", "model_final"):
        checkpointer.save(name)
    truncate(tmp_path / "model_final.pth")
    with caplog.at_level(logging.WARNING):
        chosen = checkpointer.get_checkpoint_file()
    assert chosen == str(tmp_path / "model_0000019.pth")
    assert "model_final.pth: truncated checkpoint" in caplog.text and "resuming from" in caplog.text


def test_resume_with_no_readable_checkpoint_says_what_to_do(tmp_path):
    checkpointer = NucleiCheckpointer(tiny_model(), save_dir=str(tmp_path))
    checkpointer.save("model_final")
    truncate(tmp_path / "model_final.pth")
    with pytest.raises(UserError, match="no readable checkpoint to resume from .*start without --resume"):
        checkpointer.get_checkpoint_file()


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"", "the file is empty"),
        (b"hello, I am a text file\n" * 40, "not a checkpoint (neither a PyTorch .pth zip archive nor a pickle"),
    ],
)
def test_unreadable_weights_name_the_real_reason(tmp_path, content, reason):
    path = tmp_path / "weights.pth"
    path.write_bytes(content)
    with pytest.raises(UserError) as error:
        read_checkpoint(str(path))
    message = str(error.value)
    assert message.startswith(str(path)) and reason in message and "\n" not in message
    assert "weights_only" not in message


def test_strict_loading_refuses_another_model_and_loads_the_right_one(tmp_path):
    NucleiCheckpointer(tiny_model(seed=3), save_dir=str(tmp_path)).save("good")
    other = nn.Sequential(nn.Conv2d(3, 4, 3), nn.GroupNorm(2, 4), nn.Conv2d(4, 5, 1))
    with pytest.raises(UserError, match=r"weights do not match cfg.yaml: 2 keys of another shape \(2.weight"):
        load_weights_strictly(other, str(tmp_path / "good.pth"), "cfg.yaml")
    with pytest.raises(UserError, match="no weights given: set MODEL.WEIGHTS"):
        load_weights_strictly(tiny_model(), "", "cfg.yaml")

    model = tiny_model(seed=4)
    load_weights_strictly(model, str(tmp_path / "good.pth"))
    for a, b in zip(model.state_dict().values(), tiny_model(seed=3).state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("tag", ["model_0000002.pth", "model_final.pth"])
def test_a_run_killed_while_writing_model_final_resumes_and_rewrites_it(repo_root, tmp_path, tag):
    # The old writer's failure: killed in model_final.pth's torch.save, after the periodic
    # checkpoint of the last iteration. Resume must not end with a truncated final model.
    register("synthetic_resume_train", synthetic.make_dataset(str(tmp_path / "img"), num_images=2))
    out = tmp_path / "run"
    cfg = small_cfg(repo_root, out, "synthetic_resume_train", max_iter=3)
    cfg.SOLVER.CHECKPOINT_PERIOD = 3
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    assert (out / "model_0000002.pth").is_file()
    truncate(out / "model_final.pth")
    (out / "last_checkpoint").write_text(tag)

    resumed = Trainer(cfg)
    resumed.resume_or_load(resume=True)
    assert resumed.start_iter == 3
    assert read_checkpoint(str(out / "model_final.pth"))["iteration"] == 2
    resumed.train()  # nothing left to train; must not fail
