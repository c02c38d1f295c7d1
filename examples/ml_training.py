"""On-chain training: data batches arrive in transactions and the contract takes the gradient steps.

The owner (the deployer) picks the model (`kind` and `layers`, see `ml.model` in
docs/contracts.md), the seed of its initial weights and the schedule: learning rate,
momentum and mini-batch size. Trainers send data in two ways:

- `train(x, y)`: gradient steps on the rows sent with the transaction, at once
  (streaming: the rows are split into mini-batches in order; one pass);
- `add_data(x, y)` to keep rows on chain (up to MAX_CHUNKS chunks), then
  `train_stored(epochs)`: whole epochs over every stored row, in the order they were
  added. With the data, the seed and the schedule on the ledger, anyone can check the
  model by training it again.

Who may train: the owner, the addresses the owner admits (`set_trainer`), or anyone
once the owner opens the contract (`set_open(True)`). Anyone reads the model, every
step's loss (the mean loss of the step's mini-batch before the step, a Decimal), the
record of each training transaction, the stored data, and free predictions (`predict`,
`evaluate` as read-only calls).

x is a "q16" tensor of shape (rows, features); y is an "int" tensor of labels, one per
row, for the classifiers ("softmax", "mlp"), or a "q16" tensor of shape (rows, outputs)
for "linear".

Storage layout:
    "config"          -> {"owner", "kind", "layers", "seed", "lr", "momentum", "batch", "open"}
    "model"           -> Model, the current parameters (and momentum velocity)
    "steps"           -> int, gradient steps taken so far
    ("loss", step)    -> Decimal, the loss of step `step` (0-based)
    "updates"         -> int, training transactions so far
    ("update", i)     -> {"trainer", "rows", "epochs", "first_step", "steps", "loss", "height"}
    ("trainer", addr) -> True, for admitted trainers
    "chunks", "rows"  -> int, stored chunks and rows
    ("chunk", i)      -> {"x": Tensor, "y": Tensor, "from": bytes}

Events: Trained(update, trainer, rows, epochs, first_step, steps, loss), DataAdded(chunk,
rows, sender), DataCleared(chunks), TrainerSet(trainer, allowed), OpenSet(open),
ScheduleSet(lr, momentum, batch), OwnerChanged(owner).
"""
MAX_ROWS = 4096          # rows of one train() or add_data() transaction
MAX_CHUNKS = 64          # stored chunks: bounds the loop that gathers them
MAX_EPOCHS = 100         # epochs of one train_stored() transaction
MAX_PAGE = 512           # losses returned by one losses() call


@constructor
def init(kind: str, layers: list, seed: int, lr: Decimal, momentum: Decimal, batch: int):
    check_schedule(lr, momentum, batch)
    model = ml.model(kind, layers, seed)
    storage["config"] = {"owner": ctx.sender, "kind": kind, "layers": layers, "seed": seed, "lr": lr,
                         "momentum": momentum, "batch": batch, "open": False}
    storage["model"] = model
    storage["steps"] = 0
    storage["updates"] = 0
    storage["chunks"] = 0
    storage["rows"] = 0


# ---- reads -------------------------------------------------------------------------------

@export
def config() -> dict:
    return storage["config"]


@export
def model():
    """The current model (parameters and momentum velocity)."""
    return storage["model"]


@export
def steps() -> int:
    return storage["steps"]


@export
def losses(start: int, count: int) -> list:
    """The losses of steps start .. start + count - 1 (those that exist), oldest first."""
    require(start >= 0 and count >= 0, "start and count cannot be negative")
    require(count <= MAX_PAGE, "at most " + str(MAX_PAGE) + " losses per call")
    end = min(start + count, storage["steps"])
    return [storage["loss", i] for i in range(start, end)]


@export
def last_loss():
    """The loss of the latest step, or None before any training."""
    n = storage["steps"]
    return storage["loss", n - 1] if n else None


@export
def updates() -> int:
    return storage["updates"]


@export
def update(i: int) -> dict:
    u = storage.get(("update", i))
    require(u is not None, "no such update")
    return u


@export
def is_trainer(who: bytes) -> bool:
    cfg = storage["config"]
    return cfg["open"] or who == cfg["owner"] or storage.get(("trainer", who), False)


@export
def data_size() -> dict:
    return {"chunks": storage["chunks"], "rows": storage["rows"]}


@export
def chunk(i: int) -> dict:
    c = storage.get(("chunk", i))
    require(c is not None, "no such chunk")
    return c


@export
def predict(x):
    """Labels (classifiers) or outputs (linear) of the current model: free as a read-only call."""
    check_x(x, storage["config"])
    return ml.predict(storage["model"], x)


@export
def evaluate(x, y) -> dict:
    """The current model's mean loss and correct predictions on (x, y), e.g. a held-out set."""
    cfg = storage["config"]
    rows = check_batch(x, y, cfg)
    loss, correct = ml.evaluate(storage["model"], x, y)
    return {"loss": loss, "correct": correct, "rows": rows}


# ---- training ----------------------------------------------------------------------------

@export
def train(x, y) -> list:
    """Gradient steps on the rows of this transaction; returns each step's loss."""
    cfg = storage["config"]
    require_trainer(cfg)
    rows = check_batch(x, y, cfg)
    return run(cfg, x, y, rows, 1)


@export
def add_data(x, y) -> int:
    """Keep a chunk of rows on chain for train_stored(); returns the chunk's index."""
    cfg = storage["config"]
    require_trainer(cfg)
    rows = check_batch(x, y, cfg)
    n = storage["chunks"]
    require(n < MAX_CHUNKS, "the data is full: " + str(MAX_CHUNKS) + " chunks")
    storage["chunk", n] = {"x": x, "y": y, "from": ctx.caller}
    storage["chunks"] = n + 1
    storage["rows"] += rows
    emit("DataAdded", chunk=n, rows=rows, sender=ctx.caller)
    return n


@export
def train_stored(epochs: int) -> list:
    """`epochs` passes over every stored row, in order; returns each step's loss."""
    cfg = storage["config"]
    require_trainer(cfg)
    require(1 <= epochs <= MAX_EPOCHS, "epochs must be from 1 to " + str(MAX_EPOCHS))
    n = storage["chunks"]
    require(n > 0, "no data stored: add_data() first")
    chunks = [storage["chunk", i] for i in range(n)]
    x = ml.concat([c["x"] for c in chunks])
    y = ml.concat([c["y"] for c in chunks])
    return run(cfg, x, y, storage["rows"], epochs)


# ---- the owner -----------------------------------------------------------------------------

@export
def set_trainer(who: bytes, allowed: bool):
    cfg = only_owner()
    require(len(who) == 20, "not a valid address")
    if allowed:
        storage["trainer", who] = True
    elif ("trainer", who) in storage:
        del storage["trainer", who]
    emit("TrainerSet", trainer=who, allowed=allowed)


@export
def set_open(is_open: bool):
    """Open training to everyone (True) or to the admitted trainers only (False)."""
    cfg = only_owner()
    cfg["open"] = is_open
    storage["config"] = cfg
    emit("OpenSet", open=is_open)


@export
def set_schedule(lr: Decimal, momentum: Decimal, batch: int):
    cfg = only_owner()
    check_schedule(lr, momentum, batch)
    cfg["lr"], cfg["momentum"], cfg["batch"] = lr, momentum, batch
    storage["config"] = cfg
    emit("ScheduleSet", lr=lr, momentum=momentum, batch=batch)


@export
def clear_data() -> int:
    """Delete every stored chunk (the owner only); returns how many there were."""
    only_owner()
    n = storage["chunks"]
    for i in range(n):
        del storage["chunk", i]
    storage["chunks"] = 0
    storage["rows"] = 0
    emit("DataCleared", chunks=n)
    return n


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


def require_trainer(cfg: dict):
    require(cfg["open"] or ctx.caller == cfg["owner"] or storage.get(("trainer", ctx.caller), False),
            "only admitted trainers can train or add data")


def check_schedule(lr: Decimal, momentum: Decimal, batch: int):
    require(Decimal(0) < lr <= Decimal(16), "lr must be above 0 and at most 16")
    require(Decimal(0) <= momentum < Decimal(1), "momentum must be from 0 to below 1")
    require(batch >= 0, "batch cannot be negative (0 means all rows in one step)")


def check_x(x, cfg: dict) -> int:
    features = cfg["layers"][0]
    require(x.format == "q16" and len(x.shape) == 2 and x.shape[1] == features,
            "x must be a q16 tensor of shape (rows, " + str(features) + ")")
    rows = x.shape[0]
    require(rows <= MAX_ROWS, "at most " + str(MAX_ROWS) + " rows per call")
    return rows


def check_batch(x, y, cfg: dict) -> int:
    rows = check_x(x, cfg)
    if cfg["kind"] == "linear":
        outputs = cfg["layers"][-1]
        require(y.format == "q16" and y.shape == (rows, outputs),
                "y must be a q16 tensor of shape (rows, " + str(outputs) + "), one row per row of x")
    else:
        require(y.format == "int" and y.shape == (rows,), "y must be an int tensor of labels, one per row of x")
    return rows


def run(cfg: dict, x, y, rows: int, epochs: int) -> list:
    """Train, store the model, record every step's loss and the update; returns the losses."""
    model, step_losses = ml.train(storage["model"], x, y, cfg["lr"], cfg["momentum"], cfg["batch"], epochs)
    storage["model"] = model
    first = storage["steps"]
    for i, loss in enumerate(step_losses, first):
        storage["loss", i] = loss
    n = len(step_losses)
    storage["steps"] = first + n
    u = storage["updates"]
    storage["updates"] = u + 1
    last = step_losses[-1]
    storage["update", u] = {"trainer": ctx.caller, "rows": rows, "epochs": epochs, "first_step": first,
                            "steps": n, "loss": last, "height": ctx.block_height}
    emit("Trained", update=u, trainer=ctx.caller, rows=rows, epochs=epochs, first_step=first, steps=n, loss=last)
    return step_losses
