"""A name registry: register a name for a year, point it at an address, pass it on.

Registering or renewing costs FEE (set at deploy) in the native coin, sent with the
transaction as its value (`ctx.value`); anything sent beyond the fee is refunded at once.
A name lasts PERIOD from its registration (block time, in milliseconds); once it has
expired anyone may register it again, and it no longer resolves. The registry's owner
(its deployer) can change the fee and withdraw the fees collected.

Names are 3 to 32 characters of a-z, 0-9 and "-", not starting or ending with "-".

Storage layout:
    "owner"          -> bytes, who deployed the registry
    "fee"            -> int, base units per registration or renewal
    ("name", name)   -> {"owner": bytes, "target": bytes, "expires": int (ms)}

Events: Registered(label, owner, expires), Renewed(label, expires),
Transferred(label, sender, to), TargetSet(label, target), Withdrawn(to, amount).
"""
PERIOD = 31_536_000_000  # one year (365 days) of block time, in milliseconds
ALLOWED = "abcdefghijklmnopqrstuvwxyz0123456789-"


@constructor
def init(fee: int):
    require(fee >= 0, "fee cannot be negative")
    storage["owner"] = ctx.sender
    storage["fee"] = fee


# ---- reads -------------------------------------------------------------------------------

@export
def fee() -> int:
    return storage["fee"]


@export
def resolve(name: str) -> bytes | None:
    """The address `name` points at, or None if it is not registered or has expired."""
    entry = live(name)
    return None if entry is None else entry["target"]


@export
def record(name: str) -> dict | None:
    """The whole entry of a live name: owner, target and expiry time."""
    return live(name)


# ---- writes ------------------------------------------------------------------------------

@export
def register(name: str) -> int:
    """Register a free (or expired) name to the caller, pointing at the caller; pay FEE
    with the transaction's value. Returns when the name expires (ms)."""
    check_name(name)
    require(live(name) is None, "name is taken")
    take_fee()
    expires = ctx.block_time + PERIOD
    storage["name", name] = {"owner": ctx.caller, "target": ctx.caller, "expires": expires}
    emit("Registered", label=name, owner=ctx.caller, expires=expires)
    return expires


@export
def renew(name: str) -> int:
    """Extend a live name by PERIOD (anyone may pay for it). Returns the new expiry."""
    entry = live(name)
    require(entry is not None, "name is not registered")
    take_fee()
    entry["expires"] += PERIOD
    storage["name", name] = entry
    emit("Renewed", label=name, expires=entry["expires"])
    return entry["expires"]


@export
def transfer_name(name: str, to: bytes):
    """Give a name to another owner; it keeps pointing where it pointed."""
    entry = owned(name)
    require(len(to) == 20, "not a valid address")
    entry["owner"] = to
    storage["name", name] = entry
    emit("Transferred", label=name, sender=ctx.caller, to=to)


@export
def set_target(name: str, target: bytes):
    """Point a name at an address (a contract, or anyone's account)."""
    entry = owned(name)
    require(len(target) == 20, "not a valid address")
    entry["target"] = target
    storage["name", name] = entry
    emit("TargetSet", label=name, target=target)


@export
def set_fee(new_fee: int):
    require(ctx.caller == storage["owner"], "only the registry owner can do this")
    require(new_fee >= 0, "fee cannot be negative")
    storage["fee"] = new_fee


@export
def withdraw(amount: int):
    """Send collected fees to the registry owner."""
    owner = storage["owner"]
    require(ctx.caller == owner, "only the registry owner can do this")
    require(amount > 0, "amount must be positive")
    transfer(owner, amount)  # fails the whole transaction if the registry holds less
    emit("Withdrawn", to=owner, amount=amount)


# ---- private helpers -----------------------------------------------------------------------

def check_name(name: str):
    n = len(name)
    require(3 <= n <= 32, "a name has 3 to 32 characters")
    for ch in name:
        require(ch in ALLOWED, "a name uses only a-z, 0-9 and -")
    require(not name.startswith("-") and not name.endswith("-"), "a name cannot start or end with -")


def live(name: str) -> dict | None:
    entry = storage.get(("name", name))
    if entry is None or entry["expires"] <= ctx.block_time:
        return None
    return entry


def owned(name: str) -> dict:
    entry = live(name)
    require(entry is not None, "name is not registered")
    require(entry["owner"] == ctx.caller, "only the name's owner can do this")
    return entry


def take_fee():
    """Keep FEE of the value sent and refund the rest to whoever sent it."""
    price = storage["fee"]
    require(ctx.value >= price, "send the fee as the transaction's value: " + str(price))
    if ctx.value > price:
        transfer(ctx.caller, ctx.value - price)
