"""Inference on the ledger: predictions requested by transactions, kept and queryable.

The owner deploys with a trained model (a Model value: trained by examples/ml_training.py,
averaged by examples/ml_federated.py, or quantised from a float model with
`vm.tensors.Model.from_float`), and may later replace it (`set_model`, or `load_from` a
contract that exports `model()`, such as the training contract). Every change bumps the
model's version. A job's model (docs/jobs.md: trained off chain, settled on chain) comes in
with `load_job(job)`.

- `request(x)`: a transaction; the prediction (labels for a classifier, Q.16 outputs for
  a linear model) is stored with the input, the model version and the block, under a
  new id; a Predicted event carries it too. It is the record to point at when a
  prediction must be shown later: anyone can re-run it against `model_at(version)`.
- `prediction(id)`: read such a record back; `predictions()`: how many there are.
- `predict(x)`, `probabilities(x)`: free answers through a read-only call (nothing kept).

Storage layout:
    "owner"               -> bytes
    "name"                -> str
    "version"             -> int, the current model's version (0 for the one deployed)
    ("model", version)    -> Model, every version ever used (records point at them)
    "count"               -> int, predictions requested so far (the next id)
    ("prediction", id)    -> {"requester", "version", "rows", "input", "output", "height"}

Events: ModelSet(version, kind, layers), Predicted(id, requester, version, rows, output),
OwnerChanged(owner).
"""
MAX_ROWS = 256  # rows per request: keeps a record (input and output) well inside a storage value


@constructor
def init(name: str, model):
    n = len(name)
    require(1 <= n <= 64, "name must be 1 to 64 characters")
    storage["owner"] = ctx.sender
    storage["name"] = name
    storage["count"] = 0
    storage["version"] = -1
    install(model)


# ---- reads -------------------------------------------------------------------------------

@export
def info() -> dict:
    v = storage["version"]
    m = storage["model", v]
    return {"name": storage["name"], "owner": storage["owner"], "version": v, "kind": m.kind,
            "layers": list(m.layers), "parameters": m.size, "predictions": storage["count"]}


@export
def model():
    return storage["model", storage["version"]]


@export
def model_at(version: int):
    m = storage.get(("model", version))
    require(m is not None, "no such model version")
    return m


@export
def predict(x):
    """The current model's prediction for x: free as a read-only call."""
    m = storage["model", storage["version"]]
    check_x(x, m)
    return ml.predict(m, x)


@export
def probabilities(x):
    """Class probabilities (a classifier's softmax, Q.16) for x: free as a read-only call."""
    m = storage["model", storage["version"]]
    require(m.kind != "linear", "a linear model has no class probabilities")
    check_x(x, m)
    return ml.probabilities(m, x)


@export
def predictions() -> int:
    return storage["count"]


@export
def prediction(request_id: int) -> dict:
    p = storage.get(("prediction", request_id))
    require(p is not None, "no such prediction")
    return p


# ---- writes ------------------------------------------------------------------------------

@export
def request(x) -> int:
    """Predict for x in a transaction and keep the result on the ledger; returns its id."""
    v = storage["version"]
    m = storage["model", v]
    rows = check_x(x, m)
    out = ml.predict(m, x)
    request_id = storage["count"]
    storage["count"] = request_id + 1
    storage["prediction", request_id] = {"requester": ctx.caller, "version": v, "rows": rows, "input": x,
                                         "output": out, "height": ctx.block_height}
    emit("Predicted", id=request_id, requester=ctx.caller, version=v, rows=rows, output=out)
    return request_id


@export
def set_model(model) -> int:
    """Replace the model (the owner only); returns the new version."""
    only_owner()
    return install(model)


@export
def load_job(job: int) -> int:
    """Take the model of a final training job (trained off chain, settled on chain:
    docs/jobs.md) (the owner only); returns the new version."""
    only_owner()
    return install(ml.job_model(job))


@export
def load_from(source: bytes) -> int:
    """Take the model another contract exports as model() (the owner only)."""
    only_owner()
    return install(call(source, "model"))


@export
def transfer_ownership(owner: bytes):
    only_owner()
    require(len(owner) == 20, "not a valid address")
    storage["owner"] = owner
    emit("OwnerChanged", owner=owner)


# ---- private helpers -----------------------------------------------------------------------

def only_owner():
    require(ctx.caller == storage["owner"], "only the owner can do this")


def install(m) -> int:
    v = storage["version"] + 1
    storage["model", v] = m
    storage["version"] = v
    emit("ModelSet", version=v, kind=m.kind, layers=list(m.layers))
    return v


def check_x(x, m) -> int:
    features = m.layers[0]
    require(x.format == "q16" and len(x.shape) == 2 and x.shape[1] == features,
            "x must be a q16 tensor of shape (rows, " + str(features) + ")")
    rows = x.shape[0]
    require(rows <= MAX_ROWS, "at most " + str(MAX_ROWS) + " rows per request")
    return rows
