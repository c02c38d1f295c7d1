"""A fungible token: balances, transfers and allowances, in the spirit of ERC-20.

The deployer names the token and receives the whole initial supply; after that only
the owner (the deployer) can mint more. Amounts are ints in the token's smallest unit:
with DECIMALS = 18, one whole token is 10**18 units.

Storage layout (tuple keys make nested maps):
    "meta"                   -> {"name": str, "symbol": str, "owner": bytes}
    "supply"                 -> int, the total supply
    ("balance", owner)       -> int, absent when zero
    ("allowance", owner, spender) -> int, absent when zero

Events: Transfer(sender, to, amount) for every move, mint and burn (a mint's sender and
a burn's recipient are None); Approval(owner, spender, amount).
"""
DECIMALS = 18


@constructor
def init(name: str, symbol: str, supply: int):
    n = len(name)
    require(1 <= n <= 64, "name must be 1 to 64 characters")
    n = len(symbol)
    require(1 <= n <= 12, "symbol must be 1 to 12 characters")
    require(supply >= 0, "supply cannot be negative")
    storage["meta"] = {"name": name, "symbol": symbol, "owner": ctx.sender}
    storage["supply"] = 0
    mint_to(ctx.sender, supply)


# ---- reads -------------------------------------------------------------------------------

@export
def name() -> str:
    return storage["meta"]["name"]


@export
def symbol() -> str:
    return storage["meta"]["symbol"]


@export
def decimals() -> int:
    return DECIMALS


@export
def total_supply() -> int:
    return storage["supply"]


@export
def balance_of(owner: bytes) -> int:
    return storage.get(("balance", owner), 0)


@export
def allowance(owner: bytes, spender: bytes) -> int:
    return storage.get(("allowance", owner, spender), 0)


# ---- writes ------------------------------------------------------------------------------

@export
def transfer_to(to: bytes, amount: int) -> bool:
    """Move `amount` of the caller's tokens to `to`."""
    move(ctx.caller, to, amount)
    return True


@export
def approve(spender: bytes, amount: int) -> bool:
    """Let `spender` move up to `amount` of the caller's tokens (replaces any earlier allowance)."""
    check_address(spender)
    require(amount >= 0, "amount cannot be negative")
    put(("allowance", ctx.caller, spender), amount)
    emit("Approval", owner=ctx.caller, spender=spender, amount=amount)
    return True


@export
def transfer_from(owner: bytes, to: bytes, amount: int) -> bool:
    """Move `owner`'s tokens within the allowance `owner` gave the caller."""
    allowed = storage.get(("allowance", owner, ctx.caller), 0)
    require(allowed >= amount, "allowance exceeded")
    move(owner, to, amount)
    put(("allowance", owner, ctx.caller), allowed - amount)
    return True


@export
def mint(to: bytes, amount: int) -> int:
    """Create new tokens (the owner only); returns the new total supply."""
    require(ctx.caller == storage["meta"]["owner"], "only the owner can mint")
    require(amount > 0, "amount must be positive")
    return mint_to(to, amount)


@export
def burn(amount: int) -> int:
    """Destroy `amount` of the caller's tokens; returns the new total supply."""
    require(amount > 0, "amount must be positive")
    balance = storage.get(("balance", ctx.caller), 0)
    require(balance >= amount, "insufficient balance")
    put(("balance", ctx.caller), balance - amount)
    storage["supply"] -= amount
    emit("Transfer", sender=ctx.caller, to=None, amount=amount)
    return storage["supply"]


# ---- private helpers (not callable by transactions) ----------------------------------------

def check_address(who: bytes):
    require(len(who) == 20, "not a valid address")


def put(key: tuple, amount: int):
    """Store an amount, deleting the entry at zero (an absent key reads as 0 and costs no storage)."""
    if amount:
        storage[key] = amount
    elif key in storage:
        del storage[key]


def move(sender: bytes, to: bytes, amount: int):
    check_address(to)
    require(amount > 0, "amount must be positive")
    balance = storage.get(("balance", sender), 0)
    require(balance >= amount, "insufficient balance")
    put(("balance", sender), balance - amount)
    put(("balance", to), storage.get(("balance", to), 0) + amount)
    emit("Transfer", sender=sender, to=to, amount=amount)


def mint_to(to: bytes, amount: int) -> int:
    check_address(to)
    put(("balance", to), storage.get(("balance", to), 0) + amount)
    storage["supply"] += amount
    emit("Transfer", sender=None, to=to, amount=amount)
    return storage["supply"]
