"""A model marketplace: owners list models with a price per prediction, buyers pay in coin.

- `list_model(name, model, price)`: the caller lists a model (a Model value) and owns the
  listing; `price` is in base units of the native coin per predicted row.
- `buy_prediction(listing, x)`: the buyer sends at least price * rows as the
  transaction's value (`ctx.value`); the contract predicts, keeps the purchase (input
  and output) on the ledger, pays the listing's owner (less the marketplace fee) and the
  operator's fee with `transfer()`, and refunds anything sent beyond the price.
- The owner can reprice, replace the model (a new version), pause or resume the listing,
  and sell the listing itself: `offer_listing(listing, asking)` puts it up for sale,
  `buy_listing(listing)` (paying the asking price as value) makes the caller its owner
  and pays the seller; later purchases pay the new owner.

The marketplace fee (FEE_RATE, a Decimal fraction from 0 to 0.2 set at deploy, rounded
down to whole base units) goes to the operator (the deployer). State is recorded before
any coins move.

What is sold is a prediction computed and recorded by the chain. The parameters of a
listed model are on a public ledger, as all contract state is: anyone can read them.

Storage layout:
    "operator"             -> bytes
    "fee_rate"             -> Decimal
    "listings"             -> int, listings created so far (the next id)
    ("listing", id)        -> {"owner", "name", "price", "version", "kind", "layers", "active",
                               "asking" (None, or the price of the listing itself), "sales", "earned"}
    ("model", id)          -> Model, the listing's current model
    "purchases"            -> int, predictions sold so far (the next purchase id)
    ("purchase", n)        -> {"listing", "buyer", "version", "rows", "paid", "input", "output", "height"}

Events: Listed(listing, owner, name, price), PriceSet(listing, price), ModelUpdated(listing,
version), Paused(listing, active), Sold(purchase, listing, buyer, rows, paid, fee, output),
Offered(listing, asking), OwnershipSold(listing, seller, buyer, price, fee).
"""
MAX_ROWS = 256            # rows per purchase
MAX_PRICE = 10**30        # base units per row (keeps price * rows a plain, bounded int)


@constructor
def init(fee_rate: Decimal):
    require(Decimal(0) <= fee_rate <= Decimal("0.2"), "fee rate must be from 0 to 0.2")
    storage["operator"] = ctx.sender
    storage["fee_rate"] = fee_rate
    storage["listings"] = 0
    storage["purchases"] = 0


# ---- reads -------------------------------------------------------------------------------

@export
def operator() -> bytes:
    return storage["operator"]


@export
def fee_rate() -> Decimal:
    return storage["fee_rate"]


@export
def fee(amount: int) -> int:
    """What the operator keeps of a payment of `amount`."""
    return int(amount * storage["fee_rate"])


@export
def listings() -> int:
    return storage["listings"]


@export
def listing(listing_id: int) -> dict:
    return load(listing_id)


@export
def quote(listing_id: int, rows: int) -> int:
    """What `rows` predictions cost now."""
    require(1 <= rows <= MAX_ROWS, "rows must be from 1 to " + str(MAX_ROWS))
    return load(listing_id)["price"] * rows


@export
def purchases() -> int:
    return storage["purchases"]


@export
def purchase(purchase_id: int) -> dict:
    p = storage.get(("purchase", purchase_id))
    require(p is not None, "no such purchase")
    return p


# ---- buying --------------------------------------------------------------------------------

@export
def buy_prediction(listing_id: int, x):
    """Pay for and receive the listed model's prediction for x (labels, or Q.16 outputs)."""
    d = load(listing_id)
    require(d["active"], "the listing is paused")
    features = d["layers"][0]
    require(x.format == "q16" and len(x.shape) == 2 and x.shape[1] == features,
            "x must be a q16 tensor of shape (rows, " + str(features) + ")")
    rows = x.shape[0]
    require(rows <= MAX_ROWS, "at most " + str(MAX_ROWS) + " rows per purchase")
    cost = d["price"] * rows
    require(ctx.value >= cost, "send the price as the transaction's value: " + str(cost))
    out = ml.predict(storage["model", listing_id], x)
    n = storage["purchases"]
    storage["purchases"] = n + 1
    storage["purchase", n] = {"listing": listing_id, "buyer": ctx.caller, "version": d["version"], "rows": rows,
                              "paid": cost, "input": x, "output": out, "height": ctx.block_height}
    cut = fee(cost)
    d["sales"] += 1
    d["earned"] += cost - cut
    storage["listing", listing_id] = d
    pay(d["owner"], cost - cut)
    pay(storage["operator"], cut)
    pay(ctx.caller, ctx.value - cost)
    emit("Sold", purchase=n, listing=listing_id, buyer=ctx.caller, rows=rows, paid=cost, fee=cut, output=out)
    return out


@export
def buy_listing(listing_id: int) -> int:
    """Become the listing's owner by paying its asking price; returns what the seller got."""
    d = load(listing_id)
    asking = d["asking"]
    require(asking is not None, "the listing is not for sale")
    seller = d["owner"]
    require(ctx.caller != seller, "you already own this listing")
    require(ctx.value >= asking, "send the asking price as the transaction's value: " + str(asking))
    cut = fee(asking)
    d["owner"] = ctx.caller
    d["asking"] = None
    storage["listing", listing_id] = d
    pay(seller, asking - cut)
    pay(storage["operator"], cut)
    pay(ctx.caller, ctx.value - asking)
    emit("OwnershipSold", listing=listing_id, seller=seller, buyer=ctx.caller, price=asking, fee=cut)
    return asking - cut


# ---- listing owners ------------------------------------------------------------------------

@export
def list_model(name: str, model, price: int) -> int:
    """List a model for sale by the prediction; returns the listing's id."""
    n = len(name)
    require(1 <= n <= 64, "name must be 1 to 64 characters")
    check_price(price)
    listing_id = storage["listings"]
    storage["listings"] = listing_id + 1
    storage["model", listing_id] = model
    storage["listing", listing_id] = {"owner": ctx.caller, "name": name, "price": price, "version": 0,
                                      "kind": model.kind, "layers": list(model.layers), "active": True,
                                      "asking": None, "sales": 0, "earned": 0}
    emit("Listed", listing=listing_id, owner=ctx.caller, name=name, price=price)
    return listing_id


@export
def list_job_model(name: str, job: int, price: int) -> int:
    """List the model of a final training job (docs/jobs.md) for sale by the prediction."""
    return list_model(name, ml.job_model(job), price)


@export
def set_price(listing_id: int, price: int):
    d = owned(listing_id)
    check_price(price)
    d["price"] = price
    storage["listing", listing_id] = d
    emit("PriceSet", listing=listing_id, price=price)


@export
def update_model(listing_id: int, model) -> int:
    """Replace the listing's model (any architecture); returns the new version."""
    d = owned(listing_id)
    d["version"] += 1
    d["kind"], d["layers"] = model.kind, list(model.layers)
    storage["listing", listing_id] = d
    storage["model", listing_id] = model
    emit("ModelUpdated", listing=listing_id, version=d["version"])
    return d["version"]


@export
def set_active(listing_id: int, active: bool):
    """Pause (False) or resume (True) sales of predictions."""
    d = owned(listing_id)
    d["active"] = active
    storage["listing", listing_id] = d
    emit("Paused", listing=listing_id, active=active)


@export
def offer_listing(listing_id: int, asking: int | None):
    """Put the listing itself up for sale at `asking` base units (None withdraws the offer)."""
    d = owned(listing_id)
    require(asking is None or 0 < asking <= MAX_PRICE, "asking price must be from 1 to " + str(MAX_PRICE))
    d["asking"] = asking
    storage["listing", listing_id] = d
    emit("Offered", listing=listing_id, asking=asking)


# ---- private helpers -----------------------------------------------------------------------

def load(listing_id: int) -> dict:
    d = storage.get(("listing", listing_id))
    require(d is not None, "no such listing")
    return d


def owned(listing_id: int) -> dict:
    d = load(listing_id)
    require(ctx.caller == d["owner"], "only the listing's owner can do this")
    return d


def check_price(price: int):
    require(0 <= price <= MAX_PRICE, "price must be from 0 to " + str(MAX_PRICE) + " base units per row")


def pay(to: bytes, amount: int):
    if amount > 0:
        transfer(to, amount)
