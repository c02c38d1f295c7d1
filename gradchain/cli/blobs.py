"""Blobs: `blob put FILE` (upload, then a BLOB transaction), `blob get ROOT` (every chunk
checked against the root) and `blob show ROOT` (what the node holds and until when)."""
from __future__ import annotations

import argparse
import sys

from gradchain.cli.args import _nonneg_int, _Parser, _positive_seconds, load_key_spec, parse_hash
from gradchain.cli.errors import CliError, _send_tx
from gradchain.cli.output import _emit_json, _rows
from gradchain.client import Client
from ledger.blobs import CHUNK_BYTES


def _chunk_bytes(text: str) -> int:
    v = _nonneg_int(text)
    if not 4096 <= v <= CHUNK_BYTES or v & (v - 1):
        raise argparse.ArgumentTypeError(f"expected a power of two from 4096 to {CHUNK_BYTES}, got {text!r}")
    return v


def _show(info: dict) -> list[tuple[str, object]]:
    expiry = info["expiry"]
    return [("Root", info["root"]), ("Size", f"{info['size']} bytes"), ("Chunk bytes", info["chunk_bytes"]),
            ("Chunks", f"{info['present']} of {info['chunks']} on this node"
                       + (" (complete)" if info["complete"] else "")),
            ("Kept until", f"block {expiry}" if expiry is not None else "not on chain (an upload no block recorded)")]


def cmd_blob_put(args: argparse.Namespace, client: Client) -> int:
    key = load_key_spec(args.key, args.password_file)
    try:
        ref = _send_tx(args, lambda: client.put_blob(args.file, key, chunk_bytes=args.chunk_bytes,
                                                     pin_blocks=args.pin_blocks, timeout=args.timeout))
    except ValueError as e:
        raise CliError(str(e)) from None
    info = client.blob(ref)
    if args.json:
        _emit_json(info)
    else:
        _rows(_show(info))
    return 0


def cmd_blob_get(args: argparse.Namespace, client: Client) -> int:
    root = parse_hash(args.root, "blob root")
    if args.output is None:
        if args.json:
            raise CliError("--json needs -o FILE: the blob's bytes go to the file, its description to stdout")
        sys.stdout.buffer.write(client.get_blob(root))
        sys.stdout.buffer.flush()
        return 0
    try:
        client.get_blob(root, args.output)
    except OSError as e:
        raise CliError(f"cannot write {args.output}: {e.strerror}") from None
    info = client.blob(root)
    if args.json:
        _emit_json({**info, "path": args.output, "checked": True})
    else:
        _rows([("Root", root), ("Size", f"{info['size']} bytes"), ("Written to", args.output),
               ("Checked", f"every chunk's proof ({info['chunks']} chunks)")])
    return 0


def cmd_blob_show(args: argparse.Namespace, client: Client) -> int:
    info = client.blob(parse_hash(args.root, "blob root"))
    if args.json:
        _emit_json(info)
    else:
        _rows(_show(info))
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """`blob put`, `blob get`, `blob show`."""
    b = sub.add_parser("blob", help="upload, download and inspect blobs (data sets, models)", parents=[common])
    bsub = b.add_subparsers(dest="blob_command", metavar="SUBCOMMAND", parser_class=_Parser)
    bsub.required = True
    put = bsub.add_parser("put", help="upload a file as a blob and record it on chain (BLOB transaction)",
                          parents=[common])
    put.add_argument("file", metavar="FILE")
    put.add_argument("--key", default="dev:0", help="key that signs and pays the BLOB transaction (default dev:0)")
    put.add_argument("--chunk-bytes", type=_chunk_bytes, default=CHUNK_BYTES, metavar="N",
                     help=f"chunk size, a power of two from 4096 to {CHUNK_BYTES} (default {CHUNK_BYTES})")
    put.add_argument("--pin-blocks", type=_nonneg_int, default=0, metavar="N",
                     help="keep the data N blocks beyond the retention window (paid in gas)")
    put.add_argument("--timeout", type=_positive_seconds, default=60.0, metavar="S",
                     help="seconds to wait for the commit (default 60)")
    put.set_defaults(func=cmd_blob_put, needs_client=True)
    get = bsub.add_parser("get", help="download a blob, checking every chunk against the root", parents=[common])
    get.add_argument("root", metavar="ROOT", help="the blob's root (64 hex digits)")
    get.add_argument("-o", "--output", metavar="FILE", help="write to FILE (default: the bytes to stdout)")
    get.set_defaults(func=cmd_blob_get, needs_client=True)
    show = bsub.add_parser("show", help="a blob's size, chunks on this node and expiry", parents=[common])
    show.add_argument("root", metavar="ROOT", help="the blob's root (64 hex digits)")
    show.set_defaults(func=cmd_blob_show, needs_client=True)
