"""The training loop: exact resume after a kill, checkpoint checks, DDP on 2 gloo processes."""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from labelfree.data.bundled import digits
from labelfree.methods import Hadsell, get_method, load_model
from labelfree.train.loop import CheckpointError, load_checkpoint


class Killed(Exception):
    pass


def _small_digits(n_per_class: int = 30):
    return digits("train").per_class(n_per_class, seed=0)


def _state(m):
    return {k: v.clone() for k, v in m.net_.state_dict().items()}


def _assert_same_state(s1, s2):
    assert s1.keys() == s2.keys()
    for k in s1:
        torch.testing.assert_close(s1[k], s2[k], rtol=0, atol=0, msg=k)


OPTS = dict(
    start="feature-head",
    features="pixels",
    epochs=3,
    rounds=2,
    batch_size=32,
    progress=False,
    seed=3,
)


def test_resume_after_kill_repeats_uninterrupted_run(tmp_path):
    data = _small_digits()
    full = get_method("hadsell", **OPTS).fit(data, run_dir=tmp_path / "a")

    def kill_after_round0_epoch1(rec):
        if rec["stage"] == "hadsell" and rec["round"] == 0 and rec["epoch"] == 1:
            raise Killed

    with pytest.raises(Killed):
        get_method("hadsell", **OPTS).fit(
            data, run_dir=tmp_path / "b", on_epoch_end=kill_after_round0_epoch1
        )
    ck = load_checkpoint(tmp_path / "b" / "checkpoint.pt", "hadsell")
    assert (ck["round"], ck["epoch"]) == (0, 1)
    resumed = get_method("hadsell", **OPTS).fit(data, run_dir=tmp_path / "b", resume=True)
    _assert_same_state(_state(full), _state(resumed))
    # the history (restored from the checkpoint, then continued) matches the uninterrupted run
    assert [r["loss"] for r in resumed.history_] == [r["loss"] for r in full.history_]
    assert len(resumed.history_) == 3 * 2
    log = (tmp_path / "b" / "log.jsonl").read_text().splitlines()
    assert len(log) == 6  # one record per epoch across both calls


def test_resume_across_distillation_and_method(tmp_path):
    data = _small_digits(10)
    opts = dict(
        start="distill",
        features="pixels",
        epochs=2,
        distill_epochs=2,
        batch_size=16,
        progress=False,
        augment=0.5,
        cache=False,  # the distilled net must come from the checkpoint, not the cache
    )
    full = get_method("hadsell", **opts).fit(data, run_dir=tmp_path / "a")

    def kill_in_distill(rec):
        if rec["stage"] == "distill" and rec["epoch"] == 0:
            raise Killed

    with pytest.raises(Killed):
        get_method("hadsell", **opts).fit(
            data, run_dir=tmp_path / "b", on_epoch_end=kill_in_distill
        )
    assert (tmp_path / "b" / "distill.pt").exists()
    assert not (tmp_path / "b" / "checkpoint.pt").exists()
    resumed = get_method("hadsell", **opts).fit(data, run_dir=tmp_path / "b", resume=True)
    _assert_same_state(_state(full), _state(resumed))


def test_checkpoint_of_another_stage_is_refused(tmp_path):
    data = _small_digits(10)
    opts = dict(start="distill", features="pixels", epochs=1, distill_epochs=1, progress=False)
    get_method("hadsell", **opts).fit(data, run_dir=tmp_path)
    with pytest.raises(CheckpointError, match="written by 'distill', not 'hadsell'"):
        load_checkpoint(tmp_path / "distill.pt", "hadsell")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(tmp_path / "junk.pt", "hadsell")


def test_save_load_roundtrip_embeds_identically(tmp_path):
    data = _small_digits(10)
    m = get_method(
        "hadsell", start="scratch", features="pixels", epochs=1, progress=False, batch_size=16
    ).fit(data)
    m.save(tmp_path / "model.pt")
    m2 = load_model(str(tmp_path / "model.pt"))
    assert isinstance(m2, Hadsell) and m2.encoder.start == "scratch"
    np.testing.assert_array_equal(m.embed(data), m2.embed(data))
    z = m2.embed(data)
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, rtol=1e-5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    m = get_method("hadsell", **{**OPTS, "rounds": 1, "epochs": 2, "device": "cpu"})
    m.fit(_small_digits(), run_dir=os.path.join(out_dir, f"rank{rank}"))
    torch.save(
        {"state": m.net_.state_dict(), "history": m.history_},
        os.path.join(out_dir, f"result{rank}.pt"),
    )
    torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_ddp_two_gloo_processes_stay_in_sync(tmp_path):
    mp.start_processes(
        _ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, start_method="spawn"
    )
    r0 = torch.load(tmp_path / "result0.pt", weights_only=False)
    r1 = torch.load(tmp_path / "result1.pt", weights_only=False)
    _assert_same_state(r0["state"], r1["state"])
    single = get_method("hadsell", **{**OPTS, "rounds": 1, "epochs": 2}).fit(_small_digits())
    # each rank ran half of the epoch's steps
    steps_single = single.history_[0]["steps"]
    assert r0["history"][0]["steps"] == steps_single // 2
    # only rank 0 writes the checkpoint and log
    assert (tmp_path / "rank0" / "checkpoint.pt").exists()
    assert not (tmp_path / "rank1" / "checkpoint.pt").exists()


def test_distilled_start_is_cached_and_reused_exactly(monkeypatch):
    from labelfree.nets import distill

    data = _small_digits(10)
    opts = dict(
        start="distill",
        features="pixels",
        epochs=1,
        distill_epochs=2,
        progress=False,
        batch_size=16,
        augment=0.5,
    )
    first = get_method("hadsell", **opts).fit(data)
    calls = {"n": 0}
    orig = distill.DistillStage.batch_loss

    def counting(self, *a):
        calls["n"] += 1
        return orig(self, *a)

    monkeypatch.setattr(distill.DistillStage, "batch_loss", counting)
    second = get_method("hadsell", **opts).fit(data)
    assert calls["n"] == 0  # distillation skipped: the cached network was loaded
    _assert_same_state(_state(first), _state(second))
    get_method("hadsell", **{**opts, "distill_epochs": 1}).fit(data)
    assert calls["n"] > 0  # other distillation settings: distilled again


def test_posets_resumed_in_round_zero_refines_instead_of_regrouping(tmp_path):
    """Posets carries its assignments y from round to round (the G step refines them); a run
    killed in round 0 and resumed must refine the saved y in round 1, exactly as the
    uninterrupted run does, not regroup from g(x)."""
    data = _small_digits()
    opts = {**OPTS, "epochs": 2, "g_steps": 20}
    full = get_method("posets", **opts).fit(data, run_dir=tmp_path / "a")

    def kill(rec):
        if rec["stage"] == "posets" and rec["round"] == 0 and rec["epoch"] == 0:
            raise Killed

    with pytest.raises(Killed):
        get_method("posets", **opts).fit(data, run_dir=tmp_path / "b", on_epoch_end=kill)
    resumed = get_method("posets", **opts).fit(data, run_dir=tmp_path / "b", resume=True)
    assert np.array_equal(resumed._y, full._y)
    _assert_same_state(_state(full), _state(resumed))


def test_steps_caps_every_epoch_and_a_loose_cap_changes_nothing():
    data = _small_digits()
    opts = {**OPTS, "rounds": 1, "epochs": 2}
    full = get_method("hadsell", **opts).fit(data)
    n_batches = full.history_[0]["steps"]
    assert n_batches > 2
    capped = get_method("hadsell", **opts, steps=2).fit(data)
    assert [r["steps"] for r in capped.history_] == [2, 2]
    # a cap at or above the epoch's length keeps every batch, drawn exactly as before
    loose = get_method("hadsell", **opts, steps=n_batches).fit(data)
    _assert_same_state(_state(full), _state(loose))


def test_default_distillation_is_about_300_steps_and_at_most_30_epochs():
    from labelfree.methods.encoder import Encoder

    enc = Encoder()
    # ceil(2500/256) = 10 steps an epoch: the measured 30 epochs, unchanged
    assert enc.resolved_distill_epochs(2500, 256) == 30
    assert enc.resolved_distill_epochs(250, 256) == 30  # 1 step an epoch: capped at 30
    assert enc.resolved_distill_epochs(4320, 256) == 18  # 17 steps an epoch
    assert enc.resolved_distill_epochs(60000, 256) == 2  # 235 steps an epoch
    assert enc.resolved_distill_epochs(10**7, 256) == 1
    assert Encoder(distill_epochs=7).resolved_distill_epochs(60000, 256) == 7
