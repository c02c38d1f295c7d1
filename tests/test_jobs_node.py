"""Training jobs against a real node process: a requester, an honest worker, a verifier
(gradchain/jobs.py over the SDK), and a lying worker that loses to the verifier."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from gradchain import devnet_keys
from gradchain.jobs import JobError, Verifier, Worker, job_model, post_job
from ledger import jobs as J
from ledger.datasets import DatasetHeader
from mlcore import jobs as mj
from mlcore.models import Arch
from tests.nodeproc import NodeProcess

REQ, WORKER, VERIFIER, LIAR = devnet_keys(4)
ARCH = Arch("mlp", (5, 8, 3))
ROWS, BATCH, STEPS, K = 48, 4, 24, 3


def data():
    rng = np.random.default_rng(3)
    x = rng.integers(-2**16, 2**16, size=(ROWS, ARCH.features), dtype=np.int32)
    return x, ((x[:, 0] > 0).astype(np.int32) + (x[:, 2] > 0).astype(np.int32))


@pytest.fixture
def node(tmp_path):
    n = NodeProcess(tmp_path / "node", block_time=0.1).start()
    yield n
    n.stop()


def terms(ref, private=False) -> J.Terms:
    return J.Terms(ARCH.kind, ARCH.layers, 9, 1 << 14, 1 << 15, BATCH, STEPS, K, 4, ref,
                   DatasetHeader(0, ROWS, ARCH.features, 1), private, 10**9, 10**8, 200, 15, 40)


def quiet(_: str) -> None:
    pass


def test_an_honest_job_is_verified_finalized_and_its_model_is_mlcores(node, tmp_path):
    x, y = data()
    c = node.client()
    ref = c.put_blob((x, y), REQ, chunk_bytes=4096)
    jid = post_job(c, REQ, terms(ref))
    w = Worker(node.client(), WORKER, jid, tmp_path / "w", log=quiet)
    w.claim()
    w.train()
    w.post_result()
    v = Verifier(node.client(), VERIFIER, jid, tmp_path / "v", log=quiet)
    verdict = v.verify()
    assert verdict.matches and verdict.outcome == "agreed"
    assert w.defend(timeout=120) == "final"
    p, vel = job_model(c, jid)
    (fp, fv), hashes = mj.train_job(terms(ref).spec(), x, y)
    assert all(np.array_equal(a, b) for a, b in zip(p + vel, fp + fv)) and hashes == w.hashes
    assert len(w.losses) == STEPS


def test_a_lying_worker_loses_to_the_verifier_and_an_honest_worker_then_finishes(node, tmp_path):
    x, y = data()
    c = node.client()
    ref = c.put_blob((x, y), REQ, chunk_bytes=4096)
    jid = post_job(c, REQ, terms(ref))
    liar = Worker(node.client(), LIAR, jid, tmp_path / "l", log=quiet)
    liar.claim()

    def flip(i, p, v):  # one bit of the first weight, at checkpoint 5 only
        if i == 5:
            w0 = p[0].copy()
            w0.flat[0] ^= 1 << 3
            p = (w0,) + tuple(p[1:])
        return p, v
    liar.train(tamper=flip)
    liar.post_result()
    outcome: dict = {}
    t = threading.Thread(target=lambda: outcome.setdefault("liar", liar.defend(timeout=120)))
    t.start()
    v = Verifier(node.client(), VERIFIER, jid, tmp_path / "v", log=quiet)
    verdict = v.verify(timeout=120)
    t.join(130)
    assert not verdict.matches and verdict.outcome == "open" and outcome["liar"] == "open"
    job = c.call("job", {"id": jid})
    assert job["status"] == "open" and job["rounds"] == 1
    # an honest worker takes the reopened job and is paid
    w = Worker(node.client(), WORKER, jid, tmp_path / "w", log=quiet)
    assert w.run(timeout=120) == "final"
    assert np.array_equal(job_model(c, jid)[0][0], mj.train_job(terms(ref).spec(), x, y)[0][0][0])
    with pytest.raises(JobError, match="is final"):
        Worker(node.client(), WORKER, jid, tmp_path / "w2", log=quiet).claim()


def test_the_cli_posts_works_verifies_and_shows_a_job(node, tmp_path):
    """`gradchain blob put`, `job post`, `worker` (a process of its own), `verify-job`, `job show`."""
    import json
    import subprocess
    import sys

    from ledger.datasets import encode_dataset
    from tests.test_cli import cli, cli_json, fails
    from tests.nodeproc import ROOT

    x, y = data()
    path = tmp_path / "data.gcds"
    path.write_bytes(encode_dataset(x, y))
    root = cli_json("blob", "put", str(path), "--key", "dev:0", "--chunk-bytes", "4096", url=node.url)["root"]
    posted = cli_json("job", "post", "--key", "dev:0", "--data", root, "--kind", "mlp", "--layers", "5,8,3",
                      "--seed", "9", "--lr", "0.25", "--momentum", "0.5", "--batch", "4", "--steps", "24", "--k", "3",
                      "--order-seed", "4", "--reward", "1", "--bond", "0.1", "--window", "15", url=node.url)
    jid = posted["job"]
    assert fails("job", "show", "99", url=node.url).startswith("error: no job 99")
    worker = subprocess.Popen([sys.executable, "-m", "gradchain.cli", "--rpc", node.url, "--json", "worker", str(jid),
                               "--key", "dev:1", "--workdir", str(tmp_path / "w"), "--timeout", "120"],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        import time
        deadline = time.monotonic() + 60
        while cli_json("job", "show", str(jid), url=node.url)["status"] != "posted":
            assert worker.poll() is None and time.monotonic() < deadline, worker.stderr.read()
            time.sleep(0.3)
        verdict = cli_json("verify-job", str(jid), "--key", "dev:2", "--workdir", str(tmp_path / "v"), url=node.url)
        assert verdict["matches"] is True and verdict["outcome"] == "agreed"
        out, err = worker.communicate(timeout=120)
    finally:
        worker.kill()
    assert worker.returncode == 0, err
    assert json.loads(out)["status"] == "final"
    assert "checkpoint 8/8" in err  # progress on stderr
    shown = cli("job", "show", str(jid), url=node.url).stdout
    assert "final" in shown and "8 segments" in shown
    assert str(jid) in cli("job", "list", "--status", "final", url=node.url).stdout


def test_the_jobs_example_runs_against_a_node(node, tmp_path):
    """examples/ml_jobs.py, scaled down to a tenth of a block's gas: data, job, worker,
    verifier, the loss curve, then the job's model served by the inference contract and the
    marketplace."""
    import subprocess
    import sys

    from tests.nodeproc import ROOT

    p = subprocess.run([sys.executable, str(ROOT / "examples" / "ml_jobs.py"), node.url, "--blocks", "0.1",
                        "--workdir", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "the model matches (agreed)" in p.stdout and "every step did what it should" in p.stdout
    curve = [line for line in p.stdout.splitlines() if line.strip().startswith("checkpoint") and "(step" in line]
    assert len(curve) >= 3


def test_an_inference_job_through_the_sdk_and_a_lying_worker_contested(node, tmp_path):
    """An inference job: a model blob applied to a data set; a worker whose outputs are
    wrong in one row is contested by the verifier at that segment and loses; an honest
    worker then finishes it."""
    from gradchain.jobs import InferenceVerifier, InferenceWorker, post_inference

    x, y = data()
    c = node.client()
    ref = c.put_blob((x, y), REQ, chunk_bytes=4096)
    (params, velocity), _ = mj.train_job(terms(ref).spec(), x, y)
    model = c.put_blob(mj.encode_checkpoint(ARCH, params, velocity), REQ)
    it = J.InferTerms(ARCH.kind, ARCH.layers, model, ref, DatasetHeader(0, ROWS, ARCH.features, 1), 16, 10**9,
                      10**8, 200, 15)
    jid = post_inference(c, REQ, it)

    class Liar(InferenceWorker):
        def outputs(self) -> bytes:
            out = bytearray(super().outputs())
            out[4 * 37] ^= 1  # row 37: segment 2
            return bytes(out)
    liar = Liar(node.client(), LIAR, jid, log=quiet)
    result: dict = {}
    t = threading.Thread(target=lambda: result.setdefault("liar", liar.run(timeout=120)))
    t.start()
    v = InferenceVerifier(node.client(), VERIFIER, jid, log=quiet)
    while c.call("job", {"id": jid})["status"] != "posted":
        assert t.is_alive()
    verdict = v.verify()
    t.join(130)
    assert not verdict.matches and verdict.outcome == "open" and result["liar"] == "open"
    assert InferenceWorker(node.client(), WORKER, jid, log=quiet).run(timeout=120) == "final"
    job = c.call("job", {"id": jid})
    assert job["status"] == "final" and job["terms"]["task"] == "infer" and job["rounds"] == 1
    from ledger.blobs import BlobRef
    out = c.get_blob(BlobRef(bytes.fromhex(job["outputs"]["root"]), job["outputs"]["size"],
                             job["outputs"]["chunk_bytes"]))
    from mlcore import programs
    assert out == np.ascontiguousarray(programs.predict(ARCH, params, x), dtype="<i4").tobytes()
