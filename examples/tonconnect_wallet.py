"""A TON Connect wallet app, as far as paying a fragment-gateway checkout needs one, built on
tonutils (pip install tonutils==2.5.1): it tells its `account` and signs a `sendTransaction`
request the way wallet apps do (send mode 3, the StateInit on a wallet's first transfer, the
seqno read from the chain). Its key never leaves it: the gateway gets only the signed message.

  account --version v4r2|v5r1 --mnemonic WORDS [--chain -239]
      prints TON Connect's account: {"address", "chain", "publicKey", "walletStateInit"}
  sign --version ... --mnemonic WORDS --request JSON --ton-api URL [--chain -239]
      prints {"boc"}: the signed external message, base64, as sendTransaction returns it.
      --ton-api is a toncenter-compatible API (v2) to read the wallet's seqno from; or give
      --seqno N and --deployed 0|1 instead.

--tamper amount|destination|payload|extra|key signs what a broken or hostile wallet would (a
changed amount, another destination or payload, an extra message, someone else's key): the
gateway must refuse each; its tests use this. Only JSON goes to stdout.
"""

import argparse
import asyncio
import base64
import json
import urllib.request

from ton_core import (Address, Cell, ContractState, NetworkGlobalID, WalletV4Params,
                      WalletV5Params)
from tonutils.contracts.wallet.messages import TONTransferBuilder
from tonutils.contracts.wallet.versions.v4 import WalletV4R2
from tonutils.contracts.wallet.versions.v5 import WalletV5R1
from tonutils.types import ContractInfo

SEND_MODE = 3
WALLETS = {"v4r2": WalletV4R2, "v5r1": WalletV5R1}
OTHER_WORDS = ("abandon " * 23 + "art").strip()


class OfflineClient:
    """What tonutils asks of a client while signing: the network and the account's state
    (which a wallet app reads from the chain, and the test reads from the simulator)."""

    def __init__(self, network, deployed):
        self.network = network
        self.deployed = deployed

    async def get_info(self, address):
        return ContractInfo(state=ContractState.ACTIVE if self.deployed else ContractState.NONEXIST)


def network_of(chain):
    return {"-239": NetworkGlobalID.MAINNET, "-3": NetworkGlobalID.TESTNET}[chain]


def wallet(version, words, chain, deployed=False):
    cls = WALLETS[version]
    w, _public, private, _ = cls.from_mnemonic(OfflineClient(network_of(chain), deployed), words)
    return w, private


def b64(cell):
    return base64.b64encode(cell.to_boc()).decode()


def account(args):
    w, _ = wallet(args.version, args.mnemonic, args.chain)
    return {
        "address": w.address.to_str(is_user_friendly=False),
        "chain": args.chain,
        "publicKey": w.public_key.as_bytes.hex(),
        "walletStateInit": b64(w.state_init.serialize()),
    }


def chain_state(api, address):
    """(seqno, deployed) of the wallet, from toncenter's v2 getWalletInformation."""
    url = f"{api.rstrip('/')}/api/v2/getWalletInformation?address={address}"
    with urllib.request.urlopen(url, timeout=10) as r:
        result = json.load(r)["result"]
    if result.get("account_state") == "active":
        return int(result["seqno"]), True
    return 0, False


async def sign(args):
    request = json.loads(args.request)
    if args.ton_api:
        probe, _ = wallet(args.version, args.mnemonic, args.chain)
        args.seqno, deployed = chain_state(args.ton_api, probe.address.to_str(is_user_friendly=False))
        args.deployed = int(deployed)
    w, _ = wallet(args.version, args.mnemonic, args.chain, deployed=args.deployed == 1)
    # A wallet refuses a request for another account or network.
    assert Address(request["from"]) == w.address, "the request is for another wallet"
    assert request["network"] == args.chain, "the request is for another network"
    messages = [dict(m) for m in request["messages"]]
    own = w.address.to_str(is_user_friendly=True, is_bounceable=False)
    if args.tamper == "amount":
        messages[0]["amount"] = str(int(messages[0]["amount"]) + 1)
    elif args.tamper == "destination":
        messages[0]["address"] = own
    elif args.tamper == "payload":
        messages[0]["payload"] = b64(comment_cell("a payload of my own"))
    elif args.tamper == "extra":
        messages.append({"address": own, "amount": "1", "payload": None})
    builders = [
        TONTransferBuilder(
            destination=Address(m["address"]),
            amount=int(m["amount"]),
            body=Cell.one_from_boc(base64.b64decode(m["payload"])) if m.get("payload") else None,
            send_mode=SEND_MODE,
        )
        for m in messages
    ]
    params_cls = WalletV4Params if args.version == "v4r2" else WalletV5Params
    params = params_cls(seqno=args.seqno, valid_until=int(request["valid_until"]))
    signer = w
    if args.tamper == "key":
        # Someone else's key, signing for this wallet's address and wallet id.
        other, other_private = wallet(args.version, OTHER_WORDS, args.chain)
        signer = WALLETS[args.version](w.client, w.address, w.state_init, None, w.config, other_private)
    external = await signer.build_external_message(builders, params)
    return {"boc": b64(external.to_cell())}


def comment_cell(text):
    from pytoniq_core import begin_cell
    return begin_cell().store_uint(0, 32).store_snake_string(text).end_cell()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("command", choices=["account", "sign"])
    p.add_argument("--version", required=True, choices=sorted(WALLETS))
    p.add_argument("--mnemonic", required=True)
    p.add_argument("--chain", default="-239")
    p.add_argument("--request")
    p.add_argument("--ton-api")
    p.add_argument("--seqno", type=int, default=0)
    p.add_argument("--deployed", type=int, default=0)
    p.add_argument("--tamper", choices=["amount", "destination", "payload", "extra", "key"])
    args = p.parse_args()
    out = account(args) if args.command == "account" else asyncio.run(sign(args))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
