"""The public SDK of the original service, `fragment-stars-api` (module `fragment_api`), run
unchanged against a `fragment-gateway sandbox`: every public method, its polling loop, and the
exception classes our error codes map to. tests/python_clients.rs runs it once per SDK line.

Prints a JSON summary on stdout; exits 1 when any check failed (each failure is named there).

Expectations are those of the sandbox's fixtures: @alice and @bob exist without Premium,
@premium_pete has Premium, @ghost_user does not exist; Stars cost 0.005 TON each, 3 months of
Premium 3.996 TON; no-KYC commission 1 %.
"""

import argparse
import base64
import json
import sys
import traceback
import uuid
from datetime import datetime
from importlib.metadata import version

from fragment_api import FragmentAPIClient, FragmentAPIError, PurchaseResult, QueuedRequest
from fragment_api.exceptions import (
    AuthenticationError,
    InsufficientBalanceError,
    UserNotFoundError,
    ValidationError,
)

failures = []
seen = {}


def check(name, condition, detail=None):
    if not condition:
        failures.append({"check": name, "detail": repr(detail)})


def step(name):
    """Runs one step; an unexpected exception fails it without stopping the others."""

    def run(fn):
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - any escape is a finding to report
            failures.append(
                {"check": name, "detail": "".join(traceback.format_exception(exc))[-2000:]}
            )
        return fn

    return run


def expect_error(name, cls, error_code, call, field=None):
    """`call` must raise exactly the SDK's `cls` with `error_code` (and `details` naming
    `field`), not a crash of the SDK."""
    try:
        call()
    except FragmentAPIError as exc:
        fields = [d.field for d in exc.details]
        seen[name] = {"class": type(exc).__name__, "error_code": exc.error_code, "code": exc.code, "fields": fields}
        check(f"{name}: exception class", type(exc) is cls, type(exc).__name__)
        check(f"{name}: error_code", exc.error_code == error_code, exc.error_code)
        check(f"{name}: message", isinstance(exc.message, str) and exc.message, exc.message)
        if field is not None:
            check(f"{name}: details", fields == [field], fields)
    except Exception as exc:  # noqa: BLE001
        failures.append(
            {"check": name, "detail": "SDK crashed: " + "".join(traceback.format_exception(exc))[-2000:]}
        )
    else:
        check(f"{name}: raises", False, "no exception")


def is_hash(s):
    return isinstance(s, str) and len(s) == 64 and all(c in "0123456789abcdef" for c in s)


def is_utc(t):
    return isinstance(t, datetime) and t.utcoffset() is not None and t.utcoffset().total_seconds() == 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("base_url")
    ap.add_argument("--seed", required=True, help="base64 seed of the funded demo wallet")
    ap.add_argument("--wallet-address", required=True, help="the demo wallet's address")
    ap.add_argument("--unfunded-seed", required=True, help="base64 seed of a wallet holding nothing")
    args = ap.parse_args()

    sdk = version("fragment-stars-api")
    v21 = tuple(int(p) for p in sdk.split(".")[:2]) >= (2, 1)
    # Purchases here complete in about a second; a stuck one must fail the run, not hang it.
    client = FragmentAPIClient(args.base_url, timeout=20.0, poll_timeout=30.0)
    seed = args.seed

    @step("buy_stars wait=True")
    def _():
        r = client.buy_stars("@alice", 50, seed, wait=True)
        seen["buy_stars"] = r.__dict__
        check("buy_stars: PurchaseResult", isinstance(r, PurchaseResult), type(r))
        check("buy_stars: success", r.success is True, r)
        check("buy_stars: error", r.error is None, r.error)
        check("buy_stars: transaction_hash", is_hash(r.transaction_hash), r.transaction_hash)
        check("buy_stars: transaction_id", isinstance(r.transaction_id, str) and r.transaction_id, r.transaction_id)
        check("buy_stars: username", r.username == "@alice", r.username)
        check("buy_stars: amount", r.amount == 50 and type(r.amount) is int, r.amount)
        # 50 Stars at 0.005 TON; 1 % of it. Money is decimal text, the rate a number.
        check("buy_stars: cost_ton", r.cost_ton == "0.25", r.cost_ton)
        check("buy_stars: commission_ton", r.commission_ton == "0.0025", r.commission_ton)
        check(
            "buy_stars: commission_rate",
            type(r.commission_rate) is float and r.commission_rate == 0.01,
            r.commission_rate,
        )
        check("buy_stars: mode", r.mode == "no_kyc", r.mode)
        check("buy_stars: commission_balance_ton", isinstance(r.commission_balance_ton, str), r.commission_balance_ton)
        check("buy_stars: timestamp", isinstance(r.timestamp, str), r.timestamp)

    # Before buy_premium gives @bob Premium.
    @step("check_premium_eligibility")
    def _():
        pete = client.check_premium_eligibility("@premium_pete")
        bob = client.check_premium_eligibility("@bob")
        ghost = client.check_premium_eligibility("@ghost_user")
        seen["eligibility"] = {"pete": pete, "bob": bob, "ghost": ghost}
        check("eligibility @premium_pete", pete["eligible"] is False, pete)
        check("eligibility @premium_pete: error_code", pete.get("error_code") == "PREMIUM_ALREADY_ACTIVE", pete)
        check("eligibility @premium_pete: reason", isinstance(pete.get("reason"), str), pete)
        check("eligibility @bob", bob["eligible"] is True and bob["username"] == "@bob", bob)
        check("eligibility @ghost_user", ghost["eligible"] is False and ghost.get("error_code") == "USER_NOT_FOUND", ghost)

    @step("buy_premium wait=True")
    def _():
        r = client.buy_premium("@bob", 3, seed, wait=True)
        seen["buy_premium"] = r.__dict__
        check("buy_premium: PurchaseResult", isinstance(r, PurchaseResult), type(r))
        check("buy_premium: success", r.success is True, r)
        check("buy_premium: transaction_hash", is_hash(r.transaction_hash), r.transaction_hash)
        check("buy_premium: username", r.username == "@bob", r.username)
        check("buy_premium: duration_months", r.duration_months == 3, r.duration_months)
        check("buy_premium: cost_ton", r.cost_ton == "3.996", r.cost_ton)
        check("buy_premium: commission_ton", r.commission_ton == "0.03996", r.commission_ton)

    @step("buy_stars wait=False, get_status")
    def _():
        q = client.buy_stars("@alice", 100, seed, wait=False)
        seen["buy_stars_queued"] = q.__dict__
        check("queued: request_id", isinstance(q.request_id, str) and uuid.UUID(q.request_id), q.request_id)
        check("queued: position", type(q.position) is int, q.position)
        check("queued: estimated_wait_seconds", type(q.estimated_wait_seconds) is int, q.estimated_wait_seconds)
        check("queued: message", isinstance(q.message, str), q.message)
        s = client.get_status(q.request_id)
        check("get_status: QueuedRequest", isinstance(s, QueuedRequest), type(s))
        check("get_status: id", s.id == q.request_id, s.id)
        check("get_status: type", s.type == "stars", s.type)
        check("get_status: created_at", is_utc(s.created_at), s.created_at)
        check("get_status: wallet_address", s.wallet_address == args.wallet_address, s.wallet_address)
        # Then wait for it the way wait=True does (the SDK's own loop, not ours).
        r = client._poll_result(q.request_id)
        check("queued purchase: success", r.success is True and r.amount == 100, r)
        check("queued purchase: cost_ton", r.cost_ton == "0.5", r.cost_ton)
        s = client.get_status(q.request_id)
        seen["get_status"] = {"status": s.status.value, "result": s.result}
        check("get_status: completed", s.status.value == "completed", s.status)
        check("get_status: completed_at", is_utc(s.completed_at) and is_utc(s.started_at), s)
        check("get_status: result", isinstance(s.result, dict) and s.result.get("transaction_hash") == r.transaction_hash, s.result)
        check("get_status: error", s.error is None, s.error)

    @step("get_rates")
    def _():
        r = client.get_rates()
        seen["get_rates"] = {k: str(v) for k, v in r.__dict__.items()}
        check("get_rates: rate_no_kyc", r.rate_no_kyc == 1.0, r.rate_no_kyc)
        check("get_rates: rate_no_kyc_decimal", r.rate_no_kyc_decimal == 0.01, r.rate_no_kyc_decimal)
        check("get_rates: rate_with_kyc", r.rate_with_kyc == 0, r.rate_with_kyc)
        check("get_rates: rate_with_kyc_decimal", r.rate_with_kyc_decimal == 0, r.rate_with_kyc_decimal)
        check("get_rates: updated_at", is_utc(r.updated_at), r.updated_at)

    if v21:

        @step("get_prices")
        def _():
            p = client.get_prices()
            # The SDK hands back the whole envelope; its own example reads p["stars"].
            check("get_prices: success", p.get("success") is True, p)
            check("get_prices: stars", p["stars"]["price_per_star_ton"] == "0.005", p.get("stars"))
            check("get_prices: data.stars", p["data"]["stars"]["price_per_star_ton"] == "0.005", p.get("data"))
            check("get_prices: premium", p["premium"]["3_months"]["base_ton"] == "3.996", p.get("premium"))

    @step("get_queue_status")
    def _():
        q = client.get_queue_status()
        seen["get_queue_status"] = q
        check("get_queue_status: queue_length", type(q.get("queue_length")) is int, q)
        check("get_queue_status: estimated_wait_seconds", type(q.get("estimated_wait_seconds")) is int, q)
        check("get_queue_status: is_paused", q.get("is_paused") is False, q)
        check("get_queue_status: completed", q.get("completed") == 3, q)

    if v21:

        @step("resolve_wallet")
        def _():
            w = client.resolve_wallet(seed, wallet_address=args.wallet_address)
            seen["resolve_wallet"] = w.__dict__
            check("resolve_wallet: wallet_address", w.wallet_address == args.wallet_address, w)
            check("resolve_wallet: wallet_version", w.wallet_version == "v4r2", w)
            check("resolve_wallet: seed_format", isinstance(w.seed_format, str) and w.seed_format, w)

        # The SDK's docs name WALLET_ADDRESS_MISMATCH; API.md says VALIDATION_ERROR for any
        # invalid field. Both are the SDK's ValidationError.
        expect_error(
            "resolve_wallet for another wallet's address",
            ValidationError,
            "VALIDATION_ERROR",
            lambda: client.resolve_wallet(args.unfunded_seed, wallet_address=args.wallet_address),
            field="wallet_address",
        )

    expect_error(
        "bad username format",
        ValidationError,
        "INVALID_USERNAME_FORMAT",
        lambda: client.buy_stars("@bad-name!", 50, seed, wait=False),
        field="username",
    )
    expect_error(
        "unknown user",
        UserNotFoundError,
        "USER_NOT_FOUND",
        lambda: client.buy_stars("@ghost_user", 50, seed, wait=False),
    )
    expect_error(
        "bad seed",
        AuthenticationError,
        "INVALID_SEED",
        lambda: client.buy_stars("@alice", 50, base64.b64encode(b"not a seed").decode(), wait=False),
        field="seed",
    )
    expect_error(
        "insufficient balance",
        InsufficientBalanceError,
        "INSUFFICIENT_BALANCE",
        lambda: client.buy_stars("@alice", 50, args.unfunded_seed, wait=False),
    )
    expect_error(
        "premium for a user who has it",
        FragmentAPIError,
        "PREMIUM_ALREADY_ACTIVE",
        lambda: client.buy_premium("@premium_pete", 3, seed, wait=False),
    )
    expect_error(
        "unknown request id",
        FragmentAPIError,
        "REQUEST_NOT_FOUND",
        lambda: client.get_status(str(uuid.uuid4())),
    )
    if v21:
        # USDT on TON (SDK 2.1's payment_method): paid from the demo wallet's USDT.
        @step("buy_stars payment_method=usdt_ton")
        def _():
            r = client.buy_stars("@alice", 50, seed, payment_method="usdt_ton", wait=True)
            seen["buy_stars_usdt"] = r.__dict__
            check("usdt: success", r.success is True, r)
            check("usdt: transaction_hash", is_hash(r.transaction_hash), r.transaction_hash)
            check("usdt: cost_usdt_ton", r.cost_usdt_ton == "0.75", r.cost_usdt_ton)
            check("usdt: payment_method", r.payment_method == "usdt_ton", r.payment_method)
            check("usdt: cost_ton", r.cost_ton == "0", r.cost_ton)
            check("usdt: commission_ton", r.commission_ton == "0.0025", r.commission_ton)

        expect_error(
            "payment_method unknown",
            ValidationError,
            "VALIDATION_ERROR",
            lambda: client.buy_stars("@alice", 50, seed, payment_method="usdc_base", wait=False),
            field="payment_method",
        )
        expect_error(
            "usdt: insufficient USDT",
            FragmentAPIError,
            "INSUFFICIENT_JETTON_BALANCE",
            lambda: client.buy_stars("@alice", 50, args.unfunded_seed, payment_method="usdt_ton", wait=False),
        )
    else:
        # 2.0.x sends any amount; the server's refusal is the only check.
        expect_error(
            "amount below 50",
            ValidationError,
            "VALIDATION_ERROR",
            lambda: client.buy_stars("@alice", 10, seed, wait=False),
            field="amount",
        )

    client.close()
    print(json.dumps({"sdk_version": sdk, "failures": failures, "seen": seen}, indent=2, default=str))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
