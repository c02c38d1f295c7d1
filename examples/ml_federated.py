"""Federated training: participants train on their own data and the contract averages.

The owner deploys with the model (`kind`, `layers`, init `seed`), a validation set the
contract keeps (x_val, y_val: fixed for the contract's life, so every participant knows
the yardstick before joining) and a quorum. Each round:

1. Registered participants read the global model (`model()`), train it on their private
   data off chain, and `submit(update, samples)` the resulting parameters (a Model of the
   same architecture) with the number of samples they trained on.
2. The contract scores each update on the validation set. An update whose validation
   loss is worse (higher) than the global model's is rejected: recorded as a Rejected
   event, nothing stored, and the participant may submit a better one in the same round.
   An accepted update is final for the round (one per participant, MAX_UPDATES per round).
3. Once `quorum` updates are accepted, the owner or any participant closes the round: the
   new global model is the average of the accepted updates weighted by their sample
   counts (`ml.average`), scored on the validation set and published with the round's
   record; it is the yardstick of the next round.

Only the parameters travel: the participants' data never reaches the chain.

Storage layout:
    "config"               -> {"owner", "kind", "layers", "seed", "quorum"}
    "x_val", "y_val"       -> Tensor, the validation set
    "model"                -> Model, the global model
    "baseline"             -> {"loss": Decimal, "correct": int}, the global model's validation score
    "round"                -> int, the open round (0-based)
    "accepted"             -> int, updates accepted in the open round
    ("update", r, i)       -> {"participant", "samples", "loss", "correct"}: round r's i-th accepted update
    ("update_model", r, i) -> Model, its parameters (deleted when the round closes)
    ("submitted", r, addr) -> int, the index of addr's accepted update in round r
    ("round", r)           -> {"updates", "samples", "loss", "correct", "height"}, a closed round
    ("round_model", r)     -> Model, the average published when round r closed
    ("participant", addr)  -> True
    "participants"         -> int, registered participants

Events: Registered(participant), Unregistered(participant), Accepted(round, index,
participant, samples, loss, correct), Rejected(round, participant, loss, baseline),
RoundClosed(round, updates, samples, loss, correct), OwnerChanged(owner).
"""
MAX_UPDATES = 32           # accepted updates per round: bounds the average and its loops
MAX_SAMPLES = 1_000_000_000  # one update's sample count (the weighted average stays exact)


@constructor
def init(kind: str, layers: list, seed: int, x_val, y_val, quorum: int):
    require(1 <= quorum <= MAX_UPDATES, "quorum must be from 1 to " + str(MAX_UPDATES))
    model = ml.model(kind, layers, seed)
    features = layers[0]
    require(x_val.format == "q16" and len(x_val.shape) == 2 and x_val.shape[1] == features,
            "x_val must be a q16 tensor of shape (rows, " + str(features) + ")")
    rows = x_val.shape[0]
    if kind == "linear":
        require(y_val.format == "q16" and y_val.shape == (rows, layers[-1]),
                "y_val must be a q16 tensor of shape (rows, " + str(layers[-1]) + ")")
    else:
        require(y_val.format == "int" and y_val.shape == (rows,), "y_val must be an int tensor of labels, one per row")
    storage["config"] = {"owner": ctx.sender, "kind": kind, "layers": layers, "seed": seed, "quorum": quorum}
    storage["x_val"] = x_val
    storage["y_val"] = y_val
    storage["model"] = model
    storage["baseline"] = score(model)
    storage["round"] = 0
    storage["accepted"] = 0
    storage["participants"] = 0


# ---- reads -------------------------------------------------------------------------------

@export
def config() -> dict:
    return storage["config"]


@export
def model():
    """The global model: what participants start the open round from."""
    return storage["model"]


@export
def baseline() -> dict:
    """The global model's validation loss and correct count: updates must not do worse."""
    return storage["baseline"]


@export
def validation() -> dict:
    return {"x": storage["x_val"], "y": storage["y_val"]}


@export
def current_round() -> dict:
    """The open round's number and how many updates it has accepted."""
    return {"round": storage["round"], "accepted": storage["accepted"], "quorum": storage["config"]["quorum"]}


@export
def round_info(r: int) -> dict:
    info = storage.get(("round", r))
    require(info is not None, "round " + str(r) + " is not closed")
    return info


@export
def round_model(r: int):
    m = storage.get(("round_model", r))
    require(m is not None, "round " + str(r) + " is not closed")
    return m


@export
def update(r: int, i: int) -> dict:
    u = storage.get(("update", r, i))
    require(u is not None, "no such update")
    return u


@export
def is_participant(who: bytes) -> bool:
    return storage.get(("participant", who), False)


@export
def participants() -> int:
    return storage["participants"]


# ---- participants ----------------------------------------------------------------------------

@export
def submit(candidate, samples: int) -> dict:
    """Offer parameters trained on `samples` private samples for the open round; returns
    {"accepted", "loss", "correct", "baseline"} (a rejection is not an error)."""
    require(storage.get(("participant", ctx.caller), False), "only registered participants can submit")
    cfg = storage["config"]
    r = storage["round"]
    require(("submitted", r, ctx.caller) not in storage, "your update for this round was already accepted")
    n = storage["accepted"]
    require(n < MAX_UPDATES, "this round is full: wait for it to close")
    require(1 <= samples <= MAX_SAMPLES, "samples must be from 1 to " + str(MAX_SAMPLES))
    require(candidate.kind == cfg["kind"] and list(candidate.layers) == cfg["layers"],
            "the update must be a " + cfg["kind"] + " model with layers " + str(cfg["layers"]))
    s = score(candidate)
    base = storage["baseline"]
    if s["loss"] > base["loss"]:
        emit("Rejected", round=r, participant=ctx.caller, loss=s["loss"], baseline=base["loss"])
        return {"accepted": False, "loss": s["loss"], "correct": s["correct"], "baseline": base["loss"]}
    storage["update", r, n] = {"participant": ctx.caller, "samples": samples, "loss": s["loss"],
                               "correct": s["correct"]}
    storage["update_model", r, n] = candidate
    storage["submitted", r, ctx.caller] = n
    storage["accepted"] = n + 1
    emit("Accepted", round=r, index=n, participant=ctx.caller, samples=samples, loss=s["loss"],
         correct=s["correct"])
    return {"accepted": True, "loss": s["loss"], "correct": s["correct"], "baseline": base["loss"]}


@export
def close_round() -> dict:
    """Average the accepted updates by sample count and publish the result (the owner or
    any participant, once the quorum is reached); returns the round's record."""
    cfg = storage["config"]
    require(ctx.caller == cfg["owner"] or storage.get(("participant", ctx.caller), False),
            "only the owner or a participant can close a round")
    r = storage["round"]
    n = storage["accepted"]
    require(n >= cfg["quorum"], "the round has " + str(n) + " accepted updates, the quorum is " + str(cfg["quorum"]))
    weights = [storage["update", r, i]["samples"] for i in range(n)]
    models = [storage["update_model", r, i] for i in range(n)]
    avg = ml.average(models, weights)
    s = score(avg)
    info = {"updates": n, "samples": sum(weights), "loss": s["loss"], "correct": s["correct"],
            "height": ctx.block_height}
    for i in range(n):
        del storage["update_model", r, i]
    storage["round", r] = info
    storage["round_model", r] = avg
    storage["model"] = avg
    storage["baseline"] = s
    storage["round"] = r + 1
    storage["accepted"] = 0
    emit("RoundClosed", round=r, updates=n, samples=info["samples"], loss=s["loss"], correct=s["correct"])
    return info


# ---- the owner -----------------------------------------------------------------------------

@export
def register(who: bytes):
    only_owner()
    require(len(who) == 20, "not a valid address")
    require(("participant", who) not in storage, "already registered")
    storage["participant", who] = True
    storage["participants"] += 1
    emit("Registered", participant=who)


@export
def unregister(who: bytes):
    """Remove a participant (an update it already had accepted stays in the open round)."""
    only_owner()
    require(("participant", who) in storage, "not a participant")
    del storage["participant", who]
    storage["participants"] -= 1
    emit("Unregistered", participant=who)


@export
def transfer_ownership(owner: bytes):
    cfg = only_owner()
    require(len(owner) == 20, "not a valid address")
    cfg["owner"] = owner
    storage["config"] = cfg
    emit("OwnerChanged", owner=owner)


# ---- private helpers -----------------------------------------------------------------------

def only_owner() -> dict:
    cfg = storage["config"]
    require(ctx.caller == cfg["owner"], "only the owner can do this")
    return cfg


def score(m) -> dict:
    loss, correct = ml.evaluate(m, storage["x_val"], storage["y_val"])
    return {"loss": loss, "correct": correct}
