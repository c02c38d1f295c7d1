"""ML jobs (docs/jobs.md): `job post`, `job show`, `job list`, `worker` (claim, train, post,
defend) and `verify-job` (re-run, and challenge a wrong result)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from gradchain.cli.args import _nonneg_int, load_key_spec, parse_amount
from gradchain.cli.errors import CliError
from gradchain.cli.output import _emit_json, _rows
from gradchain.client import Client
from gradchain.errors import NotFound
from gradchain.jobs import (InferenceVerifier, InferenceWorker, JobError, Verifier, Worker, get_job,
                            post_job)
from gradchain.units import format_grad
from ledger import jobs as J
from ledger.blobs import BlobRef
from ledger.datasets import HEADER_BYTES, decode_header


def _q16(text: str) -> int:
    """A learning rate or momentum: a decimal (0.25) or Q.16 units with a q suffix (16384q)."""
    from vm.decimals import Decimal
    try:
        if text.endswith("q"):
            return int(text[:-1])
        d = Decimal(text)
    except Exception:
        raise argparse.ArgumentTypeError(f"{text!r} is not a decimal number (0.25) or Q.16 units (16384q)") from None
    v = d * Decimal(65536)
    if v != Decimal(int(v)):
        raise argparse.ArgumentTypeError(f"{text} is not a multiple of 2**-16; give Q.16 units (e.g. 16384q)")
    return int(v)


def _layers(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"layers are comma-separated widths, e.g. 64,32,10; got {text!r}") from None


def _data_args(client: Client, root: str, private: str | None, chunk_bytes: int) -> tuple[BlobRef, Any]:
    """The data blob's name and header: from the node (a public data set), or for a private
    one from a local copy of the data-set file (never uploaded)."""
    if private is not None:
        data = Path(private).read_bytes()
        from ledger.blobs import ref_of
        ref = ref_of(data, chunk_bytes)
        if ref.root.hex() != root.removeprefix("0x"):
            raise CliError(f"{private} is not the blob {root} (its root is {ref.root.hex()} in chunks of {chunk_bytes})")
        return ref, decode_header(data[:HEADER_BYTES])
    info = client.blob(root)
    ref = BlobRef(bytes.fromhex(info["root"]), info["size"], info["chunk_bytes"])
    return ref, decode_header(client.blob_chunk(ref, 0)[:HEADER_BYTES])


def cmd_job_post(args: argparse.Namespace, client: Client) -> int:
    key = load_key_spec(args.key, args.password_file)
    ref, header = _data_args(client, args.data, args.private, args.chunk_bytes)
    terms = J.Terms(args.kind, args.layers, args.seed, args.lr, args.momentum, args.batch, args.steps, args.k,
                    args.order_seed, ref, header, args.private is not None, parse_amount(args.reward),
                    parse_amount(args.bond), args.work_blocks, args.window, args.move_blocks)
    try:
        jid = post_job(client, key, terms)
    except JobError as e:
        raise CliError(str(e)) from None
    if args.json:
        _emit_json({"job": jid})
    else:
        _rows([("Job", jid), ("Segments", f"{terms.segments} of {terms.k} steps"), ("Reward", format_grad(terms.reward)),
               ("Bond", format_grad(terms.bond))])
    return 0


def cmd_job_show(args: argparse.Namespace, client: Client) -> int:
    try:
        j = get_job(client, args.id)
    except NotFound as e:
        raise CliError(e.message) from None
    if args.json:
        _emit_json(j)
        return 0
    t = j["terms"]
    rows: list[tuple[str, Any]] = [
        ("Job", j["id"]), ("Status", j["status"]), ("Requester", j["requester"]),
        ("Model", f"{t['kind']} {t['layers']}, seed {t['seed']}"),
        ("Training", f"{t['steps']} steps of {t['batch']} rows, a checkpoint every {t['k']} ({t['segments']} segments)"),
        ("Data", f"{t['data']['root']} ({t['data_shape']['rows']} rows{', private' if t['private'] else ''})"),
        ("Reward", format_grad(t["reward"])), ("Bond", format_grad(t["bond"])),
        ("Worker", j["worker"] or "-"), ("Deadline", j["deadline"] or "-"), ("Rounds lost", j["rounds"])]
    if j["model"]:
        rows += [("Model blob", j["model"]["root"]), ("Trace root", j["trace_root"])]
    if j["dispute"]:
        d = j["dispute"]
        rows += [("Challenger", d["challenger"]), ("Bisection", f"[{d['lo']}, {d['hi']}]"),
                 ("Next", f"{d['turn']} {'settles' if d['probe'] is None else 'answers probe ' + str(d['probe'])}"
                          f" by height {d['deadline']}"), ("Moves", d["moves"])]
    _rows(rows)
    return 0


def cmd_job_list(args: argparse.Namespace, client: Client) -> int:
    r = client.call("jobs", {"status": args.status, "limit": args.limit})
    if args.json:
        _emit_json(r)
        return 0
    for j in r["jobs"]:
        t = j["terms"]
        print(f"{j['id']:>6}  {j['status']:<9}  {t['kind']} {t['layers']}  {t['steps']} steps  "
              f"reward {format_grad(t['reward'])}")
    if not r["jobs"]:
        print("no jobs")
    return 0


def _progress(line: str) -> None:
    """Progress goes to stderr, so that stdout holds only the result (and --json stays JSON)."""
    print(line, file=sys.stderr, flush=True)


def _silent(line: str) -> None:
    pass


def _party_output(args: argparse.Namespace) -> dict[str, Any]:
    """A party's step lines and its training progress (a bar when stderr is a terminal,
    gradchain/progress.py), both on stderr; nothing with --quiet."""
    return {"log": _silent, "progress": _silent} if args.quiet else {"log": _progress, "progress": sys.stderr}


def _private_data(path: str | None) -> tuple | None:
    if path is None:
        return None
    from ledger.datasets import decode_dataset
    _, x, y = decode_dataset(Path(path).read_bytes())
    return x, y


def _task(client: Client, job_id: int) -> str:
    try:
        return get_job(client, job_id)["terms"]["task"]
    except NotFound as e:
        raise CliError(e.message) from None


def cmd_worker(args: argparse.Namespace, client: Client) -> int:
    key = load_key_spec(args.key, args.password_file)
    try:
        if _task(client, args.id) == "infer":
            status, trace = InferenceWorker(client, key, args.id, log=_party_output(args)["log"]).run(
                timeout=args.timeout), None
        else:
            w = Worker(client, key, args.id, args.workdir, _private_data(args.data), **_party_output(args))
            status, trace = w.run(timeout=args.timeout), w.root.hex()
    except JobError as e:
        raise CliError(str(e)) from None
    if args.json:
        _emit_json({"job": args.id, "status": status, "trace_root": trace})
    else:
        print(f"job {args.id}: {status}")
    return 0 if status == "final" else 1


def cmd_verify_job(args: argparse.Namespace, client: Client) -> int:
    key = load_key_spec(args.key, args.password_file)
    try:
        if _task(client, args.id) == "infer":
            verdict = InferenceVerifier(client, key, args.id, log=_party_output(args)["log"]).verify(
                challenge=not args.no_challenge)
        else:
            v = Verifier(client, key, args.id, args.workdir, _private_data(args.data), **_party_output(args))
            verdict = v.verify(challenge=not args.no_challenge, timeout=args.timeout)
    except JobError as e:
        raise CliError(str(e)) from None
    if args.json:
        _emit_json(vars(verdict) | {"job": args.id})
    else:
        _rows([("Job", args.id), ("Result", "matches" if verdict.matches else "DIFFERS"),
               ("Worker's model", verdict.worker_hash), ("Recomputed", verdict.own_hash), ("Outcome", verdict.outcome)])
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """`job post|show|list`, `worker`, `verify-job`."""
    jp = sub.add_parser("job", help="training jobs run off chain and settled on chain (docs/jobs.md)", parents=[common])
    jsub = jp.add_subparsers(dest="job_command", metavar="ACTION")
    jsub.required = True
    po = jsub.add_parser("post", help="open a training job; the reward is held until it is final", parents=[common])
    po.add_argument("--key", required=True, help="requester key file, or dev:N")
    po.add_argument("--data", required=True, metavar="ROOT", help="the data set's blob root (gradchain blob put)")
    po.add_argument("--private", metavar="FILE", help="the data set stays off chain: its file, to name it by root")
    po.add_argument("--chunk-bytes", type=_nonneg_int, default=4096,
                    help="chunk size a private data set is named with (default 4096: a dispute reveals less)")
    po.add_argument("--kind", required=True, choices=("linear", "softmax", "mlp"))
    po.add_argument("--layers", required=True, type=_layers, help="widths, e.g. 64,32,10")
    po.add_argument("--seed", type=_nonneg_int, default=0, help="init seed (default 0)")
    po.add_argument("--lr", type=_q16, required=True, help="learning rate: 0.25, or Q.16 units (16384q)")
    po.add_argument("--momentum", type=_q16, default=0, help="0 to below 1 (default 0)")
    po.add_argument("--batch", type=_nonneg_int, required=True, help="rows per step")
    po.add_argument("--steps", type=_nonneg_int, required=True)
    po.add_argument("--k", type=_nonneg_int, required=True, help="steps per segment (a checkpoint every k)")
    po.add_argument("--order-seed", type=_nonneg_int, default=0, help="the batch order's seed (default 0)")
    po.add_argument("--reward", required=True, help="GRAD (1.5) or base units (1500000000u)")
    po.add_argument("--bond", required=True, help="what the worker and a challenger each put at stake")
    po.add_argument("--work-blocks", type=_nonneg_int, default=1000, help="blocks the worker has (default 1000)")
    po.add_argument("--window", type=_nonneg_int, default=100, help="challenge window in blocks (default 100)")
    po.add_argument("--move-blocks", type=_nonneg_int, default=50, help="blocks for each dispute move (default 50)")
    po.set_defaults(func=cmd_job_post, needs_client=True)
    sh = jsub.add_parser("show", help="a job's terms, state and dispute", parents=[common])
    sh.add_argument("id", type=_nonneg_int)
    sh.set_defaults(func=cmd_job_show, needs_client=True)
    li = jsub.add_parser("list", help="the latest jobs", parents=[common])
    li.add_argument("--status", choices=J.STATUS_NAMES)
    li.add_argument("--limit", type=_nonneg_int, default=20)
    li.set_defaults(func=cmd_job_list, needs_client=True)
    for name, fn, helptext in (("worker", cmd_worker, "claim a job, train it natively, post and defend the result"),
                               ("verify-job", cmd_verify_job, "re-run a posted job; challenge it if it is wrong")):
        w = sub.add_parser(name, help=helptext, parents=[common])
        w.add_argument("id", type=_nonneg_int, help="the job id")
        w.add_argument("--key", required=True, help="key file, or dev:N (pays the bond)")
        w.add_argument("--workdir", default=".gradchain-jobs", help="where checkpoints are kept (default .gradchain-jobs)")
        w.add_argument("--data", metavar="FILE", help="a private data set's file")
        w.add_argument("--timeout", type=float, default=3600, help="seconds to wait for the job to end")
        w.add_argument("--quiet", action="store_true",
                       help="no progress on stderr (training's bar or lines, and the steps taken)")
        if name == "verify-job":
            w.add_argument("--no-challenge", action="store_true", help="only report, never challenge")
        w.set_defaults(func=fn, needs_client=True)
