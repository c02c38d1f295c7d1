/* gradchain explorer (docs/explorer.md): one script, no build step, no library.
 * It reads the node only through the public JSON-RPC (POST /) and subscriptions (GET /ws).
 * Chain data is attacker-chosen (contract source, names, events, revert reasons): every
 * value reaches the DOM as a text node (el() below); nothing is ever parsed as HTML. */
"use strict";

const COIN = 1e9;             // base units in one GRAD (ledger/units.py)
const LATEST = 10;            // rows of the home page's lists
const SVG = "http://www.w3.org/2000/svg";
const app = document.getElementById("app");
let page = 0;                 // bumped on every navigation: late answers of an old page are dropped
let socket = null;            // the live WebSocket (home and account pages)

// ---- DOM helpers: text only ---------------------------------------------------------------

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k === "on") for (const [ev, fn] of Object.entries(v)) e.addEventListener(ev, fn);
    else e.setAttribute(k, v);
  }
  for (const kid of kids.flat(Infinity)) {
    if (kid === null || kid === undefined) continue;
    e.appendChild(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return e;
}

function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = String(text);
  return e;
}

const link = (href, text, cls) => el("a", {href, class: cls || "mono"}, text);
const short = (h) => (typeof h === "string" && h.length > 20 ? h.slice(0, 10) + "…" + h.slice(-6) : String(h));
const blockLink = (h) => link("#/block/" + h, String(h));
const txLink = (h, full) => link("#/tx/" + h, full ? h : short(h));
const addrLink = (a, full) => (a ? link("#/account/" + a, full ? a : short(a)) : el("span", {class: "muted"}, "—"));
const grad = (u) => (Number(u) / COIN).toLocaleString("en", {maximumFractionDigits: 9}) + " GRAD";
const json = (v) => JSON.stringify(v, null, 1);
// an event's data for people: name = value pairs, a string as itself (still only ever text)
const valueText = (v) => (typeof v === "string" ? v : JSON.stringify(v));
const dataText = (d) => (d && typeof d === "object" && !Array.isArray(d)
  ? Object.entries(d).map(([k, v]) => k + " = " + valueText(v)).join(", ") : valueText(d));
const when = (ms) => new Date(ms).toISOString().replace("T", " ").replace(".000Z", "Z");

function kv(rows) {
  return el("table", {class: "kv"}, rows.filter(Boolean).map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, v))));
}

function table(id, heads, rows) {
  return el("table", id ? {id} : {}, el("thead", {}, el("tr", {}, heads.map((h) => el("th", {}, h)))),
            el("tbody", {}, rows));
}

function show(...kids) {
  app.replaceChildren(...kids.flat(Infinity).filter(Boolean));
}

function failure(msg) {
  return el("p", {class: "error"}, msg);
}

// ---- the node: JSON-RPC over POST / and the WebSocket --------------------------------------

class RpcError extends Error {
  constructor(err) { super(err.message); this.code = err.code; this.data = err.data; }
}

async function rpc(method, params) {
  const r = await fetch("/", {method: "POST", headers: {"Content-Type": "application/json"},
                              body: JSON.stringify({jsonrpc: "2.0", id: 1, method, params: params || {}})});
  const doc = await r.json();
  if (doc.error) throw new RpcError(doc.error);
  return doc.result;
}

async function batch(calls) {  // [[method, params], ...] -> results (an error object where one failed)
  if (!calls.length) return [];
  const r = await fetch("/", {method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify(calls.map(([m, p], i) => ({jsonrpc: "2.0", id: i, method: m, params: p || {}})))});
  const docs = await r.json();
  const out = new Array(calls.length);
  for (const d of docs) out[d.id] = d.error ? new RpcError(d.error) : d.result;
  return out;
}

function closeSocket() {
  if (socket) { socket.onclose = null; socket.close(); socket = null; }
  setLive(false);
}

function setLive(on, text) {
  const s = document.getElementById("live");
  s.className = "live " + (on ? "on" : "off");
  s.textContent = text || (on ? "live" : "offline");
}

/* subscribe([[kind, filter, onItem], ...]): one socket for the page, closed on navigation. */
function subscribe(subs) {
  closeSocket();
  const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
  const handlers = {};
  socket = ws;
  ws.onopen = () => {
    subs.forEach(([kind, filter], i) => ws.send(JSON.stringify({jsonrpc: "2.0", id: i, method: "subscribe",
                                                                 params: [kind, filter || {}]})));
  };
  ws.onmessage = (ev) => {
    const m = JSON.parse(ev.data);
    if (m.method === "subscription") {
      const fn = handlers[m.params.subscription];
      if (fn) fn(m.params.result);
    } else if (m.id !== undefined && m.result !== undefined) {
      handlers[m.result] = subs[m.id][2];
      setLive(true);
    } else if (m.error) {
      setLive(false, "subscription refused: " + m.error.message);
    }
  };
  ws.onclose = (ev) => { setLive(false, ev.reason ? "offline: " + ev.reason : "offline"); };
}

// ---- home: latest blocks and transactions, live ---------------------------------------------

function blockRow(b) {
  return el("tr", {"data-height": b.height}, el("td", {}, blockLink(b.height)), el("td", {}, link("#/block/" + b.hash, short(b.hash))),
            el("td", {title: when(b.time_ms)}, when(b.time_ms).slice(11)), el("td", {}, String(b.tx_count)), el("td", {}, addrLink(b.proposer)));
}

function txRow(t) {
  const status = t.status === "success" ? el("span", {class: "ok"}, "ok") : el("span", {class: "bad"}, "failed");
  return el("tr", {"data-hash": t.hash}, el("td", {}, txLink(t.hash)), el("td", {}, blockLink(t.height)),
            el("td", {}, t.kind), el("td", {}, addrLink(t.from)), el("td", {}, addrLink(t.contract || t.to)), el("td", {}, status));
}

function prepend(tbody, row, max) {
  row.classList.add("fresh");
  tbody.insertBefore(row, tbody.firstChild);
  while (tbody.children.length > max) tbody.removeChild(tbody.lastChild);
}

async function home(my) {
  const st = await rpc("status");
  // a bounded read: the latest LATEST blocks and the transactions in them (never history by height)
  const lo = Math.max(0, st.height - LATEST + 1);
  const heights = [];
  for (let h = st.height; h >= lo; h--) heights.push(h);
  const blocks = await batch(heights.map((h) => ["block", {height: h}]));
  const hashes = blocks.flatMap((b) => (b instanceof Error ? [] : b.tx_hashes.slice().reverse())).slice(0, LATEST);
  const txs = await batch(hashes.map((h) => ["tx", {hash: h}]));
  if (my !== page) return;
  const heightCard = el("div", {class: "v", id: "tip-height"}, String(st.height));
  const cards = el("div", {class: "cards"},
    el("div", {class: "card"}, el("div", {class: "k"}, "Latest block"), heightCard),
    el("div", {class: "card"}, el("div", {class: "k"}, "Chain id"), el("div", {class: "v"}, st.chain_id)),
    el("div", {class: "card"}, el("div", {class: "k"}, "Mempool"), el("div", {class: "v", id: "mempool"}, String(st.mempool_size))),
    el("div", {class: "card"}, el("div", {class: "k"}, "Validator"), el("div", {class: "v"}, addrLink(st.validator))),
    el("div", {class: "card"}, el("div", {class: "k"}, "Node"), el("div", {class: "v"}, st.node_version)));
  const blockRows = blocks.filter((b) => !(b instanceof Error)).map((b) =>
    blockRow({...b.header, tx_count: b.tx_hashes.length}));
  const txRows = txs.filter((t) => !(t instanceof Error) && t.status === "committed").map((t) =>
    txRow({hash: t.hash, height: t.height, kind: t.tx.kind, from: t.tx.from, to: t.tx.to,
           contract: t.receipt.contract_address, status: t.receipt.status}));
  const bt = table("latest-blocks", ["Height", "Hash", "Time", "Txs", "Proposer"], blockRows);
  const tt = table("latest-txs", ["Hash", "Block", "Kind", "From", "To", "Status"], txRows);
  show(el("h1", {}, "Latest"), cards,
       el("div", {class: "cols"}, el("section", {}, el("h2", {}, "Blocks"), bt),
                                  el("section", {}, el("h2", {}, "Transactions"), tt)));
  document.body.setAttribute("data-ready", "home");
  performance.mark("explorer-home-drawn");  // bench/bench_explorer.py reads it: navigation start to the lists drawn
  subscribe([
    ["blocks", {}, (b) => { prepend(bt.tBodies[0], blockRow(b), LATEST); heightCard.textContent = String(b.height); }],
    ["txs", {}, (t) => prepend(tt.tBodies[0], txRow(t), LATEST)],
  ]);
}

// ---- block ----------------------------------------------------------------------------------

async function blockPage(my, id) {
  const b = await rpc("block", /^\d+$/.test(id) ? {height: Number(id)} : {hash: id});
  if (my !== page) return;
  const h = b.header;
  const txs = b.tx_hashes.length ? await batch(b.tx_hashes.slice(0, 200).map((x) => ["tx", {hash: x}])) : [];
  if (my !== page) return;
  const sigs = b.commit ? b.commit.signatures.map((s) => el("tr", {}, el("td", {}, addrLink(s.validator, true)),
                                                         el("td", {class: "mono"}, short(s.signature)))) : [];
  show(el("h1", {}, "Block ", String(h.height)),
    el("p", {}, h.height > 0 ? link("#/block/" + (h.height - 1), "← previous", "") : null, " ",
       link("#/block/" + (h.height + 1), "next →", "")),
    kv([["Hash", el("span", {class: "mono", id: "block-hash"}, h.hash)], ["Height", String(h.height)],
        ["Time", when(h.time_ms)], ["Proposer", addrLink(h.proposer, true)],
        ["Parent", h.height > 0 ? link("#/block/" + h.parent_hash, h.parent_hash) : h.parent_hash],
        ["State root", el("span", {class: "mono"}, h.state_root)], ["Tx root", el("span", {class: "mono"}, h.tx_root)],
        ["Receipts root", el("span", {class: "mono"}, h.receipts_root)],
        ["Validators hash", el("span", {class: "mono"}, h.validators_hash)],
        ["Transactions", String(b.tx_hashes.length)]]),
    el("h2", {}, "Transactions"),
    table("block-txs", ["Hash", "Kind", "From", "Gas", "Status"], txs.map((t, i) => t instanceof Error
      ? el("tr", {}, el("td", {}, txLink(b.tx_hashes[i])), el("td", {colspan: 4}, t.message))
      : el("tr", {}, el("td", {}, txLink(t.hash)), el("td", {}, t.tx.kind), el("td", {}, addrLink(t.tx.from)),
           el("td", {}, String(t.receipt.gas_used)),
           el("td", {}, t.receipt.status === "success" ? el("span", {class: "ok"}, "ok") : el("span", {class: "bad"}, "failed"))))),
    el("h2", {}, "Commit"), b.commit ? el("p", {class: "muted"}, "round " + b.commit.round) : el("p", {class: "muted"}, "not yet stored"),
    table(null, ["Validator", "Signature"], sigs));
}

// ---- transaction ----------------------------------------------------------------------------

function eventsTable(id, events, withTx) {
  return table(id, (withTx ? ["Block", "Tx"] : []).concat(["#", "Contract", "Name", "Data"]), events.map((e) =>
    el("tr", {}, withTx ? [el("td", {}, blockLink(e.height)), el("td", {}, txLink(e.tx_hash))] : [],
       el("td", {}, String(e.index)), el("td", {}, addrLink(e.contract)), el("td", {class: "event-name"}, e.name),
       el("td", {class: "mono event-data"}, dataText(e.data)))));
}

async function txPage(my, hash) {
  const t = await rpc("tx", {hash});
  if (my !== page) return;
  if (t.status === "pending") {
    show(el("h1", {}, "Transaction"), kv([["Hash", el("span", {class: "mono"}, t.hash)], ["Status", "pending (in the mempool)"],
                                          ["Transaction", el("pre", {}, json(t.tx))]]));
    return;
  }
  const r = t.receipt, tx = t.tx;
  const f = r.failure;
  const rows = [["Hash", el("span", {class: "mono", id: "tx-hash"}, t.hash)],
    ["Status", el("span", {class: r.status === "success" ? "ok" : "bad", id: "tx-status"}, r.status)],
    ["Block", el("span", {}, blockLink(t.height), " (index " + t.index + ")")],
    ["Kind", tx.kind], ["From", addrLink(tx.from, true)], ["Nonce", String(tx.nonce)],
    tx.to ? [tx.kind === "call" ? "Contract" : "To", addrLink(tx.to, true)] : null,
    tx.function ? ["Function", el("span", {class: "mono"}, tx.function)] : null,
    tx.args ? ["Arguments", el("pre", {}, json(tx.args))] : null,
    r.contract_address ? ["Created contract", addrLink(r.contract_address, true)] : null,
    ["Value", grad(tx.amount || tx.value || 0)], ["Gas used", String(r.gas_used) + (tx.gas_limit ? " of " + tx.gas_limit : "")],
    tx.gas_price !== undefined ? ["Gas price", String(tx.gas_price)] : null,
    r.error ? ["Revert reason", el("span", {class: "bad", id: "revert-reason"}, r.error)] : null,
    f ? ["Failed at", el("span", {id: "revert-where"}, f.code, f.function ? " in " + f.function + "()" : "",
                         f.line ? ", line " + f.line : "", f.contract ? " of " : "", f.contract ? addrLink(f.contract) : null)] : null,
    r.result !== null && r.result !== undefined ? ["Result", el("pre", {}, json(r.result))] : null,
    r.logs.length ? ["print() output", el("pre", {}, r.logs.join("\n"))] : null];
  show(el("h1", {}, "Transaction"), kv(rows), el("h2", {}, "Events"), eventsTable("tx-events", r.events, false));
}

// ---- account and contract ----------------------------------------------------------------

async function accountPage(my, address) {
  const [acct, code] = await batch([["account", {address}], ["code", {address}]]);
  if (my !== page) return;
  if (acct instanceof Error) throw acct;
  const live = table("account-txs", ["Hash", "Block", "Kind", "From", "To", "Status"], []);
  const parts = [el("h1", {}, code instanceof Error ? "Account " : "Contract ", el("span", {class: "mono"}, acct.address)),
    kv([["Balance", el("span", {id: "balance"}, grad(acct.balance))], ["Balance (base units)", String(acct.balance)],
        ["Nonce", String(acct.nonce)], ["Pending nonce", String(acct.pending_nonce)], ["At height", String(acct.height)]])];
  if (!(code instanceof Error)) parts.push(...await contractParts(my, address, code));
  if (my !== page) return;
  parts.push(el("h2", {}, "New transactions (live)"),
    el("p", {class: "muted"}, "No RPC indexes past transactions by account; those sent from or to this address " +
       "from now on appear here as they commit."), live);
  show(parts);
  const add = (t) => prepend(live.tBodies[0], txRow(t), 50);
  subscribe(code instanceof Error ? [["txs", {sender: address}, add], ["txs", {recipient: address}, add]]
                                  : [["txs", {contract: address}, add]]);
}

function argValue(text) {  // a JSON value where the text is one, else the text as a string
  try { return JSON.parse(text); } catch (e) { return text; }
}

function callForm(address, name, params) {
  const inputs = params.map((p) => el("input", {type: "text", placeholder: p, "data-param": p}));
  const out = el("div", {class: "out mono"});
  const form = el("form", {class: "call", "data-function": name}, el("code", {}, name + "(" + params.join(", ") + ")"),
                  inputs, el("button", {type: "submit"}, "call"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    out.textContent = "…";
    try {
      const r = await rpc("call", {contract: address, function: name, args: inputs.map((i) => argValue(i.value))});
      out.replaceChildren(el("span", {class: "ok"}, "→ "), json(r.result), el("span", {class: "muted"}, "  (gas " + r.gas_used + ")"));
    } catch (e) {
      const d = e.data || {};
      out.replaceChildren(el("span", {class: "bad"}, e.message), d.line ? el("span", {class: "muted"}, "  (line " + d.line + ")") : null);
    }
  });
  return el("div", {}, form, out);
}

function storageForm(address) {
  const input = el("input", {type: "text", placeholder: 'key as JSON: "config" or {"tuple": ["loss", 0]}', id: "storage-key", size: 40});
  const out = el("div", {class: "out mono", id: "storage-value"});
  const form = el("form", {class: "call"}, input, el("button", {type: "submit"}, "read"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const r = await rpc("storage", {contract: address, key: argValue(input.value)});
      out.textContent = r.value === null ? "(not set)" : json(r.value);
    } catch (e) { out.replaceChildren(el("span", {class: "bad"}, e.message)); }
  });
  return el("div", {}, form, out);
}

async function contractParts(my, address, code) {
  const [events, models] = await batch([["events", {contract: address, limit: 50}], ["contract_models", {contract: address}]]);
  const lines = code.source.split("\n");
  const parts = [el("h2", {}, "Contract"),
    kv([["Code hash", el("span", {class: "mono"}, code.code_hash)],
        ["Functions", String(Object.keys(code.functions).length)],
        models instanceof Error || (!models.models.length && !models.series.length) ? null
          : ["ML", link("#/ml/" + address, models.models.length + " model(s), " + models.series.length + " series: open the charts", "")]]),
    el("h2", {}, "Read-only calls"),
    el("p", {class: "muted"}, "Arguments are JSON values (a bare word is a string); calls run against the latest block and cost nothing."),
    Object.entries(code.functions).map(([name, params]) => callForm(address, name, params)),
    el("h2", {}, "Storage"), storageForm(address),
    el("h2", {}, "Events (latest blocks)"),
    events instanceof Error ? failure(events.message) : eventsTable("contract-events", events.events.slice(-50).reverse(), true),
    el("h2", {}, "Source"), el("ol", {class: "source", id: "source"}, lines.map((l) => el("li", {}, l)))];
  return parts;
}

// ---- ML: the models and loss histories in a contract's storage --------------------------

function chart(name, points) {
  const W = 640, H = 240, L = 56, R = 12, T = 12, B = 28;
  const xs = points.map((p) => p[0]), ys = points.map((p) => Number(p[1]));
  const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  const sx = (x) => L + (x1 === x0 ? 0.5 : (x - x0) / (x1 - x0)) * (W - L - R);
  const sy = (y) => T + (y1 === y0 ? 0.5 : 1 - (y - y0) / (y1 - y0)) * (H - T - B);
  const s = svg("svg", {class: "chart", width: W, height: H, viewBox: `0 0 ${W} ${H}`, "data-series": name,
                        role: "img", "aria-label": name + ": " + points.length + " points"});
  s.appendChild(svg("line", {class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B}));
  s.appendChild(svg("line", {class: "axis", x1: L, y1: T, x2: L, y2: H - B}));
  s.appendChild(svg("text", {x: 4, y: T + 10}, y1.toPrecision(4)));
  s.appendChild(svg("text", {x: 4, y: H - B}, y0.toPrecision(4)));
  s.appendChild(svg("text", {x: L, y: H - 8}, String(x0)));
  s.appendChild(svg("text", {x: W - R - 40, y: H - 8}, String(x1)));
  s.appendChild(svg("polyline", {class: "line", points: points.map((p) => sx(p[0]) + "," + sy(Number(p[1]))).join(" ")}));
  if (points.length <= 2000) {
    for (const [x, y] of points) {
      const c = svg("circle", {class: "pt", cx: sx(x), cy: sy(Number(y)), r: 2, "data-step": x, "data-value": y});
      c.appendChild(svg("title", {}, name + "[" + x + "] = " + y));
      s.appendChild(c);
    }
  }
  return s;
}

async function mlPage(my, address) {
  const m = await rpc("contract_models", {contract: address});
  if (my !== page) return;
  show(el("h1", {}, "ML in ", link("#/account/" + address, address)),
    el("p", {class: "muted"}, "Models are the values of type model in the contract's storage; series are the keys " +
       "(name, i) holding numbers, such as (\"loss\", step)." + (m.truncated ? " Only the first " + m.scanned + " entries were read." : "")),
    el("h2", {}, "Models"),
    table("models", ["Storage key", "Kind", "Layers", "Parameters"], m.models.map((x) =>
      el("tr", {}, el("td", {class: "mono"}, json(x.key)), el("td", {}, x.kind), el("td", {}, x.layers.join(" → ")), el("td", {}, String(x.size))))),
    m.series.map((s) => el("section", {class: "series"}, el("h2", {}, s.name + " (" + s.points.length + " points)"),
                           s.points.length ? chart(s.name, s.points) : el("p", {class: "muted"}, "empty"))),
    m.series.length ? null : el("p", {class: "muted"}, "No numeric series in this contract's storage."));
}

// ---- validators -------------------------------------------------------------------------

async function validatorsPage(my) {
  const [vs, act] = await batch([["validators", {}], ["validator_activity", {blocks: 100}]]);
  if (my !== page) return;
  if (vs instanceof Error) throw vs;
  const byAddr = {};
  if (!(act instanceof Error)) for (const v of act.validators) byAddr[v.address] = v;
  const row = (v) => {
    const a = byAddr[v.address] || {proposed: 0, signed: 0, missed: 0, last_missed: null};
    return el("tr", {}, el("td", {}, addrLink(v.address, true)), el("td", {}, grad(v.stake)),
              el("td", {}, (100 * v.stake / vs.total_stake).toFixed(1) + "%"), el("td", {}, String(a.proposed)),
              el("td", {}, String(a.signed)), el("td", {class: a.missed ? "bad" : ""}, String(a.missed)),
              el("td", {}, a.last_missed === null ? "—" : blockLink(a.last_missed)));
  };
  const rotation = act instanceof Error ? [] : act.proposers.slice(-20).reverse();
  show(el("h1", {}, "Validators"),
    kv([["Height", String(vs.height)], ["Total stake", grad(vs.total_stake)], ["Set hash", el("span", {class: "mono"}, vs.hash)],
        act instanceof Error ? null : ["Activity window", "blocks " + act.from_height + " to " + act.to_height]]),
    el("h2", {}, "Signing block " + vs.height),
    table("validators", ["Address", "Stake", "Share", "Proposed", "Signed", "Missed", "Last missed"], vs.validators.map(row)),
    el("h2", {}, "Next set"),
    table(null, ["Address", "Stake"], vs.next.map((v) => el("tr", {}, el("td", {}, addrLink(v.address, true)), el("td", {}, grad(v.stake))))),
    el("h2", {}, "Proposer rotation (latest 20 blocks)"),
    table("rotation", ["Height", "Proposer"], rotation.map((p) => el("tr", {}, el("td", {}, blockLink(p.height)), el("td", {}, addrLink(p.proposer, true))))));
}

// ---- ML jobs ------------------------------------------------------------------------------

async function jobsPage(my) {
  const r = await rpc("jobs", {limit: 50});
  if (my !== page) return;
  show(el("h1", {}, "ML jobs"), el("p", {class: "muted"}, r.count + " job(s) posted; the latest 50 shown."),
    table("jobs", ["Id", "Task", "Status", "Requester", "Worker", "Reward", "Dispute"], r.jobs.map((j) =>
      el("tr", {}, el("td", {}, link("#/job/" + j.id, String(j.id))), el("td", {}, j.terms.task + " " + j.terms.kind),
         el("td", {}, j.status), el("td", {}, addrLink(j.requester)), el("td", {}, addrLink(j.worker)),
         el("td", {}, grad(j.terms.reward)), el("td", {}, j.dispute ? "open" : "—")))));
}

async function jobPage(my, id) {
  const j = await rpc("job", {id: Number(id)});
  if (my !== page) return;
  const t = j.terms, d = j.dispute;
  const checkpoints = t.task === "train" ? t.steps / t.k + 1 : null;
  show(el("h1", {}, "Job " + j.id),
    kv([["Status", el("span", {id: "job-status"}, j.status)], ["Task", t.task + ", " + t.kind + " " + t.layers.join(" → ")],
        ["Requester", addrLink(j.requester, true)], ["Worker", addrLink(j.worker, true)],
        ["Reward", grad(t.reward)], ["Bond", grad(t.bond)], ["Deadline", j.deadline === null ? "—" : blockLink(j.deadline)],
        ["Posted at", j.posted_at === null ? "—" : blockLink(j.posted_at)],
        checkpoints ? ["Checkpoints", checkpoints + " (every " + t.k + " of " + t.steps + " steps, " + t.segments + " segment(s))"] : null,
        ["Checkpoint trace root", j.trace_root ? el("span", {class: "mono"}, j.trace_root) : "— (no result yet)"],
        [t.task === "train" ? "Model blob" : "Outputs blob", (j.model || j.outputs) ? el("span", {class: "mono"}, (j.model || j.outputs).root) : "—"],
        ["Dispute rounds", String(j.rounds)]]),
    el("h2", {}, "Dispute"),
    d ? kv([["Challenger", addrLink(d.challenger, true)], ["Bisection range", "checkpoints " + d.lo + " to " + d.hi],
            ["Probe", d.probe === null ? "—" : String(d.probe)], ["Turn", addrLink(d.turn, true)],
            ["Deadline", blockLink(d.deadline)], ["Moves", String(d.moves)]])
      : el("p", {class: "muted", id: "no-dispute"}, "No dispute."),
    el("h2", {}, "Terms"), el("pre", {}, json(t)));
}

// ---- routing and search -------------------------------------------------------------------

const ROUTES = [
  [/^$/, home], [/^block\/(\w+)$/, blockPage], [/^tx\/(0x)?([0-9a-fA-F]{64})$/, (my, _p, h) => txPage(my, h)],
  [/^account\/(0x[0-9a-fA-F]{40})$/, accountPage], [/^ml\/(0x[0-9a-fA-F]{40})$/, mlPage],
  [/^validators$/, validatorsPage], [/^jobs$/, jobsPage], [/^job\/(\d+)$/, jobPage],
];

async function route() {
  const my = ++page;
  closeSocket();
  document.body.removeAttribute("data-ready");
  const path = decodeURIComponent(location.hash.replace(/^#\/?/, ""));
  for (const [re, fn] of ROUTES) {
    const m = re.exec(path);
    if (!m) continue;
    try {
      await fn(my, ...m.slice(1));
      if (my === page && !document.body.hasAttribute("data-ready")) document.body.setAttribute("data-ready", path.split("/")[0] || "home");
    } catch (e) {
      if (my === page) { show(failure(e.message)); document.body.setAttribute("data-ready", "error"); }
    }
    return;
  }
  show(failure("no such page: #/" + path));
  document.body.setAttribute("data-ready", "error");
}

document.getElementById("search").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const q = document.getElementById("search-input").value.trim();
  const hex = q.replace(/^0x/i, "");
  if (/^\d+$/.test(q)) location.hash = "#/block/" + q;
  else if (/^job\s*\d+$/i.test(q)) location.hash = "#/job/" + q.replace(/\D/g, "");
  else if (/^[0-9a-fA-F]{40}$/.test(hex)) location.hash = "#/account/0x" + hex.toLowerCase();
  else if (/^[0-9a-fA-F]{64}$/.test(hex)) {
    rpc("tx", {hash: hex}).then(() => { location.hash = "#/tx/" + hex; }, () => { location.hash = "#/block/" + hex; });
  } else show(failure("not a height, hash, address or job: " + q));
});

window.addEventListener("hashchange", route);
route();
