"""An escrow: a buyer's payment held until an arbiter (or the buyer) releases it.

1. The buyer opens a deal naming the seller, paying the price as the transaction's
   value (`ctx.value`); the contract holds the coins.
2. The seller marks the deal delivered.
3. The buyer or the arbiter releases the payment to the seller, less the arbiter's fee
   (FEE_RATE, a Decimal fraction set at deploy, rounded down to whole base units); or
   the arbiter or the seller refunds it in full to the buyer.
If the seller has not marked delivery within DELIVERY_WINDOW of block time, the buyer
may take the payment back without the arbiter.

Storage layout:
    "arbiter"        -> bytes
    "fee_rate"       -> Decimal, from 0 (no fee) to 0.5
    "deals"          -> int, deals opened so far (the next deal's id)
    ("deal", id)     -> {"buyer", "seller": bytes, "amount": int, "state": str, "deadline": int (ms)}

A deal's state goes "open" -> "delivered" -> "released", or to "refunded" from "open"
or "delivered". Events: Opened, Delivered, Released, Refunded (each with the deal id).
"""
DELIVERY_WINDOW = 1_209_600_000  # two weeks (14 days) of block time, in milliseconds


@constructor
def init(arbiter: bytes, fee_rate: Decimal):
    require(len(arbiter) == 20, "not a valid address")
    require(Decimal(0) <= fee_rate <= Decimal("0.5"), "fee rate must be from 0 to 0.5")
    storage["arbiter"] = arbiter
    storage["fee_rate"] = fee_rate
    storage["deals"] = 0


@export
def open_deal(seller: bytes) -> int:
    """Open a deal paying the transaction's value to `seller` on release; returns its id."""
    require(len(seller) == 20, "not a valid address")
    require(seller != ctx.caller, "buyer and seller must differ")
    require(ctx.value > 0, "send the price as the transaction's value")
    deal_id = storage["deals"]
    storage["deals"] = deal_id + 1
    deadline = ctx.block_time + DELIVERY_WINDOW
    storage["deal", deal_id] = {"buyer": ctx.caller, "seller": seller, "amount": ctx.value,
                                "state": "open", "deadline": deadline}
    emit("Opened", deal=deal_id, buyer=ctx.caller, seller=seller, amount=ctx.value, deadline=deadline)
    return deal_id


@export
def deal(deal_id: int) -> dict:
    return load(deal_id)


@export
def arbiter_fee(amount: int) -> int:
    """What the arbiter keeps when `amount` is released."""
    return int(amount * storage["fee_rate"])


@export
def mark_delivered(deal_id: int):
    d = load(deal_id)
    require(ctx.caller == d["seller"], "only the seller can mark delivery")
    require(d["state"] == "open", "the deal is " + d["state"])
    save(deal_id, d, "delivered")
    emit("Delivered", deal=deal_id)


@export
def release(deal_id: int) -> int:
    """Pay the seller (the buyer or the arbiter decides); returns what the seller got."""
    d = load(deal_id)
    arbiter = storage["arbiter"]
    require(ctx.caller == d["buyer"] or ctx.caller == arbiter, "only the buyer or the arbiter can release")
    require(d["state"] == "delivered" or d["state"] == "open", "the deal is " + d["state"])
    save(deal_id, d, "released")
    fee = arbiter_fee(d["amount"])
    paid = d["amount"] - fee
    transfer(d["seller"], paid)
    if fee:
        transfer(arbiter, fee)
    emit("Released", deal=deal_id, seller=d["seller"], paid=paid, fee=fee)
    return paid


@export
def refund(deal_id: int):
    """Give the buyer everything back (the arbiter or the seller decides)."""
    d = load(deal_id)
    require(ctx.caller == storage["arbiter"] or ctx.caller == d["seller"],
            "only the arbiter or the seller can refund")
    require(d["state"] == "delivered" or d["state"] == "open", "the deal is " + d["state"])
    pay_back(deal_id, d)


@export
def reclaim(deal_id: int):
    """The buyer takes the payment back when delivery was never marked in time."""
    d = load(deal_id)
    require(ctx.caller == d["buyer"], "only the buyer can reclaim")
    require(d["state"] == "open", "the deal is " + d["state"])
    require(ctx.block_time >= d["deadline"], "the seller still has time to deliver")
    pay_back(deal_id, d)


# ---- private helpers -----------------------------------------------------------------------

def load(deal_id: int) -> dict:
    d = storage.get(("deal", deal_id))
    require(d is not None, "no such deal")
    return d


def save(deal_id: int, d: dict, state: str):
    """Record the new state before any coins move."""
    d["state"] = state
    storage["deal", deal_id] = d


def pay_back(deal_id: int, d: dict):
    save(deal_id, d, "refunded")
    transfer(d["buyer"], d["amount"])
    emit("Refunded", deal=deal_id, buyer=d["buyer"], amount=d["amount"])
