#!/usr/bin/env python3
"""Drive the PUBLIC PyPI client `fragment_api_py==14.0.0` (module `FragmentAPI`)
against the fragment.com simulator on loopback, to show the simulator speaks the protocol
a real client speaks. Run by tests/python_clients.rs.

Flow per product, all through the library's own public API:
  page GET (Set-Cookie, ajInit hash) -> update*State(mode=new) -> search*Recipient
  -> init*Request -> get*Link  ==> FragmentAPI returns an unsigned PreparedTransaction.
Nothing is signed or broadcast: the client is built WITHOUT `api_key`, so
`FragmentClient.has_wallet` is False and `_purchase_flow` returns the prepared
transaction instead of calling tonutils (FragmentAPI/methods/purchases.py:134).
No tonapi/toncenter client is ever constructed.

Use http://127.0.0.1:PORT, not http://localhost:PORT: curl_cffi does not send the
constructor cookie dict to host "localhost" (only cookies the server Set itself).

usage:
  python tests/python/fragmentapi_driver.py http://127.0.0.1:PORT \
      [--cookies '{"stel_ssid":"..","stel_dt":"-180","stel_token":"..","stel_ton_token":".."}' | 'k=v; k2=v2']
      [--mnemonic "24 words"] [--ton-proof] [--prices] [--error-cases]
      [--stars-user alice --stars 50] [--premium-user bob --months 3] [--no-premium]
  env fallbacks: FRAG_BASE_URL, FRAG_COOKIES, FRAG_MNEMONIC
Exit code 0 when every requested flow reached a payment link, 1 otherwise, 2 on bad usage.

MONKEYPATCHING (all in retarget_fragmentapi(); nothing on disk is modified):
  1. FragmentAPI.types.constants: every str constant starting with https://fragment.com
     (FRAGMENT_BASE_URL, FRAGMENT_API_URL, STARS_BUY_PAGE, PREMIUM_GIFT_PAGE, ...) is
     re-pointed at BASE_URL; BASE_HEADERS["origin"] is mutated in place (same dict object
     is used by FragmentAPI.utils.http).
  2. FragmentAPI.utils.http: its imported copies FRAGMENT_API_URL / FRAGMENT_BASE_URL, and
     validate_page_url (the library refuses anything but https://fragment.com:443,
     utils/http.py:39-50) replaced by a loopback-only check.
  3. FragmentAPI.methods.purchases._FLOWS: the page URL in each flow tuple (built at import).
  4. FragmentAPI.utils.auth.FRAGMENT_BASE_URL (only used by --ton-proof helpers).
  5. Safety net: curl_cffi AsyncSession.request refuses any non-loopback URL.
  6. Observation only: FragmentTransport.call is wrapped to record each API call
     (method, form fields, JSON answer) for the summary. Behaviour is unchanged.
"""
from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import secrets
import sys
import tempfile
import time
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

LOOPBACK_NAMES = {"localhost"}
TRACE: list[dict[str, Any]] = []


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def retarget_fragmentapi(base_url: str) -> None:
    """Point FragmentAPI 14.0.0 at base_url (must be loopback). See module docstring."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not _is_loopback(parts.hostname):
        raise SystemExit(f"refusing non-loopback base URL: {base_url!r}")
    base = f"{parts.scheme}://{parts.netloc}"
    if parts.hostname == "localhost":
        print("warning: curl_cffi will not send --cookies to 'localhost'; use 127.0.0.1", file=sys.stderr)

    import curl_cffi.requests as cr
    from FragmentAPI.types import constants as C
    import FragmentAPI.utils.http as HTTP
    import FragmentAPI.utils.auth as AUTH
    import FragmentAPI.methods.purchases as PUR

    real = "https://fragment.com"
    for name in dir(C):
        value = getattr(C, name)
        if isinstance(value, str) and value.startswith(real):
            setattr(C, name, base + value[len(real):])
    assert HTTP.BASE_HEADERS is C.BASE_HEADERS
    C.BASE_HEADERS["origin"] = base
    HTTP.FRAGMENT_API_URL = C.FRAGMENT_API_URL
    HTTP.FRAGMENT_BASE_URL = C.FRAGMENT_BASE_URL
    AUTH.FRAGMENT_BASE_URL = C.FRAGMENT_BASE_URL

    def validate_page_url(url: str) -> str:
        p = urlsplit(url)
        if f"{p.scheme}://{p.netloc}" != base:
            raise HTTP.FragmentAPIError(f"driver: refusing non-simulator URL {url!r}")
        return url

    HTTP.validate_page_url = validate_page_url
    PUR._FLOWS = {
        kind: ((base + flow[0][len(real):]) if flow[0].startswith(real) else flow[0], *flow[1:])
        for kind, flow in PUR._FLOWS.items()
    }

    original_request = cr.AsyncSession.request

    async def guarded_request(self, method, url, *a, **kw):  # type: ignore[no-untyped-def]
        if not _is_loopback(urlsplit(str(url)).hostname):
            raise RuntimeError(f"driver: blocked non-loopback request {method} {url}")
        return await original_request(self, method, url, *a, **kw)

    cr.AsyncSession.request = guarded_request  # type: ignore[method-assign]

    original_call = HTTP.FragmentTransport.call

    async def traced_call(self, method, data=None, page_url=C.FRAGMENT_BASE_URL):  # type: ignore[no-untyped-def]
        entry: dict[str, Any] = {"method": method, "page": page_url,
                                 "fields": {k: _short(v) for k, v in (data or {}).items()}}
        TRACE.append(entry)
        result = await original_call(self, method, data, page_url)
        entry["response"] = result
        return result

    HTTP.FragmentTransport.call = traced_call  # type: ignore[method-assign]


def _short(v: Any, n: int = 120) -> Any:
    s = v if isinstance(v, str) else json.dumps(v) if isinstance(v, (dict, list)) else v
    return s[:n] + "..." if isinstance(s, str) and len(s) > n else s


def _parse_cookies(text: str | None) -> dict[str, str]:
    if not text:
        return {}
    text = text.strip()
    if text.startswith("{"):
        return {str(k): str(v) for k, v in json.loads(text).items()}
    return dict(p.strip().split("=", 1) for p in text.split(";") if "=" in p)


def _describe_messages(raw: dict[str, Any]) -> list[dict[str, Any]]:
    from FragmentAPI.utils.decoder import decode_boc_comment

    out = []
    for m in (raw.get("transaction") or {}).get("messages") or []:
        item = {"address": m.get("address"), "amount": m.get("amount"), "payload": m.get("payload")}
        try:
            c = decode_boc_comment(m.get("payload") or "")
            item["comment"] = c if isinstance(c, str) else f"<non-comment cell {c.hash.hex()}>"
        except Exception as exc:  # report, don't hide
            item["comment_error"] = str(exc)
        out.append(item)
    return out


async def ton_proof_login(client: Any, seed: str) -> dict[str, Any]:
    """Connect the wallet the way FragmentAPI.utils.auth._proof_on_session does
    (GET "/" for Wallet.init.ton_proof, sign with the library's _generate_proof,
    POST checkTonProofAuth on page "/"), minus its fragment.com-only cookie filter."""
    from FragmentAPI.types import constants as C
    from FragmentAPI.utils.auth import _generate_proof, embedded_object
    from FragmentAPI.utils.http import raise_api_error

    transport = client._get_transport()
    page = f"{C.FRAGMENT_BASE_URL}/"
    text = await transport.get_text(page)
    challenge = embedded_object(text, "Wallet.init(").get("ton_proof")
    account, device, proof = _generate_proof(seed.split(), client.wallet_version, str(challenge))
    result = await transport.call(
        "checkTonProofAuth",
        {"account": json.dumps(account), "device": json.dumps(device), "proof": json.dumps(proof)},
        page,
    )
    raise_api_error(result)
    jar = {c.name: c.value for c in client._session.cookies.jar}
    return {"verified": result.get("verified"), "got_stel_ton_token": bool(jar.get("stel_ton_token")),
            "account_address": account["address"]}


async def run_flow(client: Any, kind: str, user: str, amount: int) -> dict[str, Any]:
    from FragmentAPI.types.models import PreparedTransaction

    start = len(TRACE)
    out: dict[str, Any] = {"product": kind, "username": user, "quantity" if kind == "stars" else "months": amount}
    try:
        if kind == "stars":
            res = await client.purchase_stars(user, amount, show_sender=True, payment_method="ton")
        else:
            res = await client.purchase_premium(user, amount, show_sender=True, payment_method="ton")
        if not isinstance(res, PreparedTransaction):  # would mean it tried to pay: must not happen
            raise RuntimeError(f"unexpected result type {type(res).__name__}")
        out.update(
            ok=True,
            req_id=res.req_id,
            amount_ton=str(Decimal(res.payment_nanoton) / Decimal(10**9)),
            payment_nanoton=res.payment_nanoton,
            valid_until=res.valid_until,
            valid_for_s=res.valid_until - int(time.time()),
            link_messages=_describe_messages(res.raw),
            confirm_method=res.raw.get("confirm_method"),
            confirm_params=res.raw.get("confirm_params"),
            library_added_fee_message={"fee_nanoton": res.fee_nanoton,
                                       "note": "FragmentAPI appends a 1.5% message to its author; not protocol, never sent"},
        )
    except Exception as exc:
        out.update(ok=False, error_type=type(exc).__name__, error=str(exc))
    calls = TRACE[start:]
    out["api_methods"] = [c["method"] for c in calls]
    for c in calls:
        if c["method"].startswith("search"):
            out["search_response"] = c.get("response")
        elif c["method"].startswith("init"):
            out["init_response"] = c.get("response")
    return out


async def error_cases(client: Any, names: dict[str, str]) -> list[dict[str, Any]]:
    cases = [("stars", names["unknown"], "UserNotFoundError"),
             ("stars", names["not_user"], "UserNotFoundError"),
             ("premium", names["subscribed"], "AlreadySubscribedError")]
    out = []
    for kind, user, expected in cases:
        r = await run_flow(client, kind, user, 50 if kind == "stars" else 3)
        out.append({"product": kind, "username": user, "expected": expected,
                    "got": r.get("error_type", "no error"), "message": r.get("error"),
                    "pass": r.get("error_type") == expected})
    return out


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("base_url", nargs="?", default=os.environ.get("FRAG_BASE_URL"))
    ap.add_argument("--cookies", default=os.environ.get("FRAG_COOKIES"),
                    help="JSON object or 'k=v; k2=v2'. FragmentAPI requires stel_ssid, stel_dt, stel_token.")
    ap.add_argument("--mnemonic", default=os.environ.get("FRAG_MNEMONIC"),
                    help="24-word TON mnemonic used only to derive the TON Connect `account` (and --ton-proof). "
                         "Default: a fresh random one.")
    ap.add_argument("--ton-proof", action="store_true", help="run checkTonProofAuth first to obtain stel_ton_token")
    ap.add_argument("--prices", action="store_true", help="also call get_stars_prices/get_premium_prices/get_stars_price")
    ap.add_argument("--error-cases", action="store_true")
    ap.add_argument("--stars-user", default="alice")
    ap.add_argument("--stars", type=int, default=50)
    ap.add_argument("--premium-user", default="bob")
    ap.add_argument("--months", type=int, default=3)
    ap.add_argument("--no-premium", action="store_true")
    ap.add_argument("--unknown-user", default="ghost_user")
    ap.add_argument("--not-user", default="stars_shop_bot")
    ap.add_argument("--subscribed-user", default="premium_pete")
    ap.add_argument("--timeout", type=float, default=10.0)
    args = ap.parse_args()
    if not args.base_url:
        ap.print_usage(sys.stderr)
        return 2

    retarget_fragmentapi(args.base_url)
    from FragmentAPI import FragmentClient
    from FragmentAPI.storage.payments import SQLitePaymentStorage
    from ton_core import mnemonic_new

    cookies = _parse_cookies(args.cookies)
    # FragmentAPI's cookie mode insists on non-empty stel_ssid/stel_dt/stel_token (types/constants.py:105).
    # Placeholders are sent as-is; a simulator that does not know them should Set-Cookie fresh ones.
    cookies.setdefault("stel_ssid", f"{secrets.token_hex(9)}_{secrets.randbelow(10**19)}")
    cookies.setdefault("stel_dt", "-180")
    cookies.setdefault("stel_token", "driver-placeholder-stel-token")
    seed = args.mnemonic or " ".join(mnemonic_new(24))

    summary: dict[str, Any] = {"library": "fragment_api_py==14.0.0 (FragmentAPI)", "base_url": args.base_url,
                               "cookies_sent": sorted(cookies)}
    client = FragmentClient(
        cookies=cookies,
        seed=seed,            # only derives the TON Connect account offline
        api_key=None,         # => has_wallet False => never signs or broadcasts
        wallet_version="V5R1",
        timeout=args.timeout,
        wallet_auth=False,    # never use the package's shared hard-coded auth wallet
        payment_storage=SQLitePaymentStorage(os.path.join(tempfile.mkdtemp(prefix="fragmentapi-driver-"), "payments.sqlite3")),
    )
    try:
        if args.ton_proof:
            try:
                summary["ton_proof"] = await ton_proof_login(client, seed)
            except Exception as exc:
                summary["ton_proof"] = {"ok": False, "error_type": type(exc).__name__, "error": str(exc)}
        summary["stars"] = await run_flow(client, "stars", args.stars_user, args.stars)
        if not args.no_premium:
            summary["premium"] = await run_flow(client, "premium", args.premium_user, args.months)
        if args.prices:
            prices: dict[str, Any] = {}
            for name, coro in (("stars_packages", client.get_stars_prices()),
                               ("premium_options", client.get_premium_prices()),
                               ("stars_quote", client.get_stars_price(args.stars))):
                try:
                    prices[name] = (await coro).model_dump()
                except Exception as exc:
                    prices[name] = {"error_type": type(exc).__name__, "error": str(exc)}
            summary["prices"] = prices
        if args.error_cases:
            summary["error_cases"] = await error_cases(
                client, {"unknown": args.unknown_user, "not_user": args.not_user, "subscribed": args.subscribed_user})
        summary["session_cookies_after"] = sorted({c.name for c in client._session.cookies.jar}) if client._session else []
    finally:
        await client.aclose()
    summary["api_trace"] = TRACE
    print(json.dumps(summary, indent=2, default=str))
    flows = [summary["stars"]] + ([] if args.no_premium else [summary["premium"]])
    return 0 if all(f.get("ok") for f in flows) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
