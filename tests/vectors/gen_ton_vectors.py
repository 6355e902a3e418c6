"""Independent-reference TON wallet vectors (seeds, addresses, signed transfers).

Produces tests/vectors/ton_vectors.json for the Rust wallet library. Everything
here comes from existing Python TON libraries, never from the Rust code:

  * tonutils 2.5.1 (on ton-core 0.7.1, which wraps pytoniq-core 0.2.1):
    key derivation, wallet code/data/StateInit/addresses (WalletV4R2,
    WalletV5R1) and the signed external messages (build_external_message with
    TONTransferBuilder). This is the main source.
  * pytoniq 0.1.43: second source for v4r2/v5r1 addresses, StateInit and signed
    transfers (same pytoniq-core cell layer, but its own wallet code).
  * tonsdk 1.0.15: fully independent cell/BoC/address/mnemonic code. Used for v4r2
    addresses and single-message v4r2 transfers, to re-hash every emitted BoC,
    for the hand-built TEP-467 normalized hash and to check address strings.
  * bip-utils 2.12.3: second BIP39 + SLIP-10 ed25519 derivation
    (m/44'/607'/i'), second TON-native mnemonic -> key, v4/v5r1 addresses.
  * pynacl 1.6.2: checks every signature.

Deterministic: fixed mnemonics, seqno and valid_until. The clock is never read.
tonsdk's v4 wallet reads time.time() for valid_until, so that module's `time` is
patched to a fixed value.

Run (note: bip-utils pulls in pytoniq-core-fork, which installs into the same
`pytoniq_core` folder, so reinstall pytoniq-core 0.2.1 last; the script checks
this):

  python3 -m venv v && v/bin/pip install pytoniq-core==0.2.1 pytoniq==0.1.43 \
      ton-core==0.7.1 tonutils==2.5.1 tonsdk==1.0.15 bip-utils==2.12.3 pynacl==1.6.2 \
  && v/bin/pip install --force-reinstall --no-deps pytoniq-core==0.2.1 \
  && v/bin/python tests/vectors/gen_ton_vectors.py > tests/vectors/ton_vectors.json

Only JSON goes to stdout. A failed cross-check raises AssertionError.
"""

import asyncio
import base64
import csv
import hashlib
import importlib.metadata as md
import json
import os
import sys
import types

import nacl.signing
from bip_utils import Bip32Slip10Ed25519, Bip39SeedGenerator, Bip44, Bip44Coins
from bip_utils.ton import Ton
from bip_utils.ton.addr import TonAddrVersions
from bip_utils.ton.mnemonic import TonSeedGenerator, TonSeedTypes
from ton_core import (Address, Cell, ContractState, NetworkGlobalID, PrivateKey,
                      WalletV4Params, WalletV5Params)
from ton_core.contrib.utils import (multichain_mnemonic_is_valid, multichain_mnemonic_to_private_key,
                                    normalize_hash, ton_mnemonic_is_valid)
from ton_core.crypto.keys import mnemonic_to_private_key
from pytoniq_core import Builder, MessageAny, StateInit
from pytoniq_core.tlb.transaction import InternalMsgInfo
from tonutils.contracts.wallet.messages import TONTransferBuilder
from tonutils.contracts.wallet.versions.v4 import WalletV4R2
from tonutils.contracts.wallet.versions.v5 import WalletV5R1
from tonutils.types import ContractInfo
from pytoniq.contract.contract import Contract as PqContract
from pytoniq.contract.wallets.wallet import Wallet as PqWallet, WalletV4 as PqWalletV4
from pytoniq.contract.wallets.wallet import WalletV4R2 as PqWalletV4R2
from pytoniq.contract.wallets.wallet_v5 import WalletV5R1 as PqWalletV5R1
from tonsdk import boc as tsdk_boc
from tonsdk.contract.wallet import _wallet_contract_v4 as tsdk_v4_module
from tonsdk.contract.wallet import WalletV4ContractR2 as TsdkWalletV4R2
from tonsdk.crypto import mnemonic_to_wallet_key as tsdk_mnemonic_to_wallet_key
from tonsdk.utils import Address as TsdkAddress

# --------------------------------------------------------------------------- inputs

VALID_UNTIL = 1767225600          # 2026-01-01T00:00:00Z
NO_EXPIRY = 0xFFFFFFFF            # what pytoniq/tonsdk force for seqno 0
V4R2_WALLET_ID = 698983191
V5R1_MAINNET_ID = 2147483409      # network -239, wc 0, version 0, subwallet 0
V5R1_TESTNET_ID = 2147483645      # network -3

SEEDS = [
    # name, mnemonic, format, account_index
    ("ton_art_hockey",
     "art hockey victory skill bubble stool heart gas debris april column knife gadget "
     "envelope donkey base nature dynamic artefact leg edge aisle retreat fatigue", "ton", None),
    # generated once with ton_core.contrib.utils.ton_mnemonic_new(24), then hardcoded
    ("ton_food_brand",
     "food brand calm recipe grain lazy stumble spatial answer cup milk cool tennis route "
     "staff brand combine fade beef erosion domain chaos rain acoustic", "ton", None),
    ("ton_wood_symptom",
     "wood symptom want advance orchard sort chronic album vote display another fiscal clog "
     "nothing proud sugar crash safe resemble junior trouble install crime unhappy", "ton", None),
    # generated once with ton_core.contrib.utils.multichain_mnemonic_new(), then hardcoded
    ("bip39_12_leg_visual",
     "leg visual recipe primary stable retreat olive right joy seven capital soldier", "bip39", 0),
    ("bip39_12_leg_visual_acct1",
     "leg visual recipe primary stable retreat olive right joy seven capital soldier", "bip39", 1),
    ("bip39_12_leg_visual_acct5",
     "leg visual recipe primary stable retreat olive right joy seven capital soldier", "bip39", 5),
    ("bip39_12_stadium_cheese",
     "stadium cheese advance miss detail text pole ribbon obey tooth steak valve", "bip39", 0),
    ("bip39_24_virus_debate",
     "virus debate drastic narrow know shoot sponsor range account relief perfect hammer "
     "amused oppose foster atom shrimp float cram attract warrior recycle lumber flavor", "bip39", 0),
]

KNOWN_ART_HOCKEY = {
    "public_key": "020be512d3a6eecc8d9e2c0ed2b712497592bbb670948bcd06e3ee22a729e25d",
    "v4r2_raw": "0:eb9d4873b9f40fda8d7429ca7c89f96da0dc5aad0be4c762881e91d7375f03d3",
}

DEST_EQ = "EQBvW8Z5huBkMJYdnfAEM5JqTNkuWX3diqYENkWsIL0XggGG"
DEST_UQ = "UQBvW8Z5huBkMJYdnfAEM5JqTNkuWX3diqYENkWsIL0XglxD"            # same account
DEST_RAW = "0:6f5bc67986e06430961d9df00433926a4cd92e597ddd8aa6043645ac20bd1782"  # same account
DEST_MC_RAW = "-1:3333333333333333333333333333333333333333333333333333333333333333"
DEST_MC_EQ = "Ef8zMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzM0vF"          # same as DEST_MC_RAW
DEST_TEST_KQ = "kQDrnUhzufQP2o10Kcp8ifltoNxarQvkx2KIHpHXN18D0wRb"        # testnet-only flag, bounceable
DEST_TEST_0Q = "0QDrnUhzufQP2o10Kcp8ifltoNxarQvkx2KIHpHXN18D01me"        # testnet-only flag, non-bounceable

# Real Fragment payloads, unpadded base64 exactly as Fragment serves them.
FRAGMENT_1CELL = "te6ccgEBAQEAJwAASgAAAAA1MCBUZWxlZ3JhbSBTdGFycyAKClJlZiNRRTlBRjdsT20"
FRAGMENT_2CELL = "te6ccgEBAgEALQABTgAAAAAxMDAwMCBUZWxlZ3JhbSBTdGFycyAKClJlZiN6SWgwT0UxdgEAAmQ"

# Long comments (> 123 bytes). The first one puts a Cyrillic letter across the
# 123-byte cell boundary, the second puts characters across both 123 and 250.
LONG_RU = ("Оплата заказа №10 — спасибо! Привет из Telegram Stars 🚀 Это длинный комментарий "
           "на русском языке, более 123 байт. 🙏 Ref#abc")
LONG_EMOJI = ("Emoji boundary test 1: 🐳💎🔥🚀🙏✅🌫️ Съешь же ещё этих мягких французских булок, "
              "да выпей чаю. The quick brown fox jumps over the lazy dog 🦊🐶. Ёжик в тумане — "
              "½ ∑ ∞ ✓ конец 🎉")


def none():
    return {"kind": "none"}


def comment(text):
    return {"kind": "comment", "text": text}


def boc(b64):
    return {"kind": "boc", "boc": b64}


def msg(destination, amount, body):
    return {"destination": destination, "amount": str(amount), "body": body}


TRANSFERS = [
    # name, seed, wallet, seqno, valid_until, messages, expected (message_hash, normalized)
    ("v4r2_comment_short", "ton_art_hockey", "v4r2", 5, VALID_UNTIL,
     [msg(DEST_EQ, 1_500_000_000, comment("Telegram Stars Ref#abc"))],
     ("34b591c455db79573dcb6197ce4cd3b45f191b422766e378c2024de329e31f57",
      "a39a7fa7dae06199804315ceec52868776ff0cb2474d4c6863f78cd5b5cbe11d")),
    ("v5r1_comment_short", "ton_art_hockey", "v5r1", 5, VALID_UNTIL,
     [msg(DEST_EQ, 1_500_000_000, comment("Telegram Stars Ref#abc"))],
     ("d045d87800d2c122366eae2910f89693966a7fc4c92667f2916740e6d670021f",
      "8cfdfd0f780ca97830e9a55e3e5c570f8914620e0950452a52d7a6e07885e7c6")),
    ("v4r2_fragment_payload_1cell", "ton_art_hockey", "v4r2", 6, VALID_UNTIL,
     [msg(DEST_EQ, 50_000_000, boc(FRAGMENT_1CELL))], None),
    ("v4r2_fragment_payload_2cell", "ton_art_hockey", "v4r2", 7, VALID_UNTIL,
     [msg(DEST_EQ, 5_000_000_000, boc(FRAGMENT_2CELL))], None),
    ("v5r1_fragment_payload_1cell", "ton_art_hockey", "v5r1", 6, VALID_UNTIL,
     [msg(DEST_EQ, 50_000_000, boc(FRAGMENT_1CELL))], None),
    ("v5r1_fragment_payload_2cell", "ton_art_hockey", "v5r1", 7, VALID_UNTIL,
     [msg(DEST_EQ, 5_000_000_000, boc(FRAGMENT_2CELL))], None),
    ("v4r2_long_comment_cyrillic", "ton_food_brand", "v4r2", 12, VALID_UNTIL,
     [msg(DEST_UQ, 10_000_000, comment(LONG_RU))], None),
    ("v5r1_long_comment_emoji", "ton_food_brand", "v5r1", 12, VALID_UNTIL,
     [msg(DEST_RAW, 10_000_000, comment(LONG_EMOJI))], None),
    ("v4r2_empty_body_nonbounceable", "ton_wood_symptom", "v4r2", 1, VALID_UNTIL,
     [msg(DEST_UQ, 1, none())], None),
    ("v4r2_empty_body_raw", "ton_wood_symptom", "v4r2", 2, VALID_UNTIL,
     [msg(DEST_RAW, 2_000_000_000, none())], None),
    ("v5r1_empty_body_raw", "ton_wood_symptom", "v5r1", 1, VALID_UNTIL,
     [msg(DEST_RAW, 123_456_789, none())], None),
    ("v5r1_empty_body_nonbounceable", "ton_wood_symptom", "v5r1", 2, VALID_UNTIL,
     [msg(DEST_UQ, 0, none())], None),
    ("v4r2_multi_4", "ton_art_hockey", "v4r2", 42, VALID_UNTIL,
     [msg(DEST_EQ, 1_000_000_000, comment("first")),
      msg(DEST_UQ, 2_000_000_000, none()),
      msg(DEST_RAW, 3_000_000_000, boc(FRAGMENT_2CELL)),
      msg(DEST_MC_EQ, 4_000_000_000, comment(LONG_RU))], None),
    ("v5r1_multi_6", "ton_art_hockey", "v5r1", 42, VALID_UNTIL,
     [msg(DEST_EQ, 1_000_000_000, comment("first")),
      msg(DEST_UQ, 2_000_000_000, none()),
      msg(DEST_RAW, 3_000_000_000, boc(FRAGMENT_1CELL)),
      msg(DEST_MC_RAW, 4_000_000_000, comment(LONG_EMOJI)),
      msg(DEST_TEST_KQ, 1, boc(FRAGMENT_2CELL)),
      msg(DEST_TEST_0Q, 1_000_000_000_000_000, comment("last 🎯"))], None),
    ("v4r2_deploy_seqno0", "ton_wood_symptom", "v4r2", 0, NO_EXPIRY,
     [msg(DEST_EQ, 100_000_000, comment("deploy v4r2"))], None),
    # StateInit (2 refs) + 4 message refs do not fit one cell: the body goes to a ref
    ("v4r2_deploy_multi_4", "ton_food_brand", "v4r2", 0, NO_EXPIRY,
     [msg(DEST_EQ, 10_000_000, none()),
      msg(DEST_UQ, 20_000_000, comment("two")),
      msg(DEST_RAW, 30_000_000, boc(FRAGMENT_1CELL)),
      msg(DEST_MC_RAW, 40_000_000, comment("four"))], None),
    ("v5r1_deploy_seqno0", "ton_wood_symptom", "v5r1", 0, NO_EXPIRY,
     [msg(DEST_EQ, 100_000_000, comment("deploy v5r1"))], None),
    ("v5r1_bip39_deploy_seqno0", "bip39_12_leg_visual", "v5r1", 0, VALID_UNTIL,
     [msg(DEST_UQ, 250_000_000, comment("from a BIP39 seed"))], None),
    ("v5r1_bip39_acct5", "bip39_12_leg_visual_acct5", "v5r1", 3, VALID_UNTIL,
     [msg(DEST_EQ, 1_500_000_000, boc(FRAGMENT_1CELL))], None),
    ("v4r2_bip39_24", "bip39_24_virus_debate", "v4r2", 9, VALID_UNTIL,
     [msg(DEST_RAW, 777, comment("bip39 24 words"))], None),
]

SEND_MODE = 3

# --------------------------------------------------------------------------- helpers


def check_pytoniq_core_files():
    """bip-utils pulls pytoniq-core-fork, which installs into pytoniq_core/ too."""
    dist = md.distribution("pytoniq-core")
    assert dist.version == "0.2.1", dist.version
    for path, digest, _ in csv.reader(dist.read_text("RECORD").splitlines()):
        if path.startswith("pytoniq_core/") and path.endswith(".py") and digest:
            data = open(os.path.join(str(dist.locate_file("")), path), "rb").read()
            got = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            assert "sha256=" + got == digest, f"{path} is not from pytoniq-core 0.2.1 (reinstall it)"


def to_b64(cell):
    out = base64.b64encode(cell.to_boc(has_idx=False, hash_crc32=True)).decode()
    assert out.startswith("te6cck")
    return out


def from_b64(b64):
    """Parse a BoC given as base64 with or without padding."""
    return Cell.one_from_boc(base64.b64decode(b64 + "=" * (-len(b64) % 4)))


def tonsdk_cell(cell):
    return tsdk_boc.Cell.one_from_boc(cell.to_boc(has_idx=False, hash_crc32=True))


def check_hash_with_tonsdk(cell):
    """tonsdk parses our BoC and recomputes the hash with its own code."""
    b = cell.to_boc(has_idx=False, hash_crc32=True)
    tcell = tsdk_boc.Cell.one_from_boc(b)
    assert bytes(tcell.bytes_hash()) == cell.hash
    # Byte-identical BoC from tonsdk's serializer too.
    assert bytes(tcell.to_boc(has_idx=False, hash_crc32=True)) == b
    return cell.hash.hex()


def address_forms(addr):
    forms = {
        "raw": addr.to_str(is_user_friendly=False),
        "bounceable": addr.to_str(is_bounceable=True),
        "non_bounceable": addr.to_str(is_bounceable=False),
        "testnet_bounceable": addr.to_str(is_bounceable=True, is_test_only=True),
        "testnet_non_bounceable": addr.to_str(is_bounceable=False, is_test_only=True),
    }
    t = TsdkAddress(forms["raw"])
    assert forms["bounceable"] == t.to_string(True, True, True, False)
    assert forms["non_bounceable"] == t.to_string(True, True, False, False)
    assert forms["testnet_bounceable"] == t.to_string(True, True, True, True)
    assert forms["testnet_non_bounceable"] == t.to_string(True, True, False, True)
    assert forms["bounceable"].startswith("EQ") and forms["non_bounceable"].startswith("UQ")
    assert forms["testnet_bounceable"].startswith("kQ")
    assert forms["testnet_non_bounceable"].startswith("0Q")
    return forms


class OfflineClient:
    """Just enough of a tonutils client: the network id and an account state."""

    def __init__(self, network, deployed):
        self.network = network
        self.deployed = deployed

    async def get_info(self, address):
        return ContractInfo(state=ContractState.ACTIVE if self.deployed else ContractState.NONEXIST)


class OfflineLiteClient:
    """Just enough of a pytoniq provider: every account is reported as not existing."""

    async def raw_get_account_state(self, address):
        return None, None


def tonutils_wallet(version, secret, network=NetworkGlobalID.MAINNET, deployed=True):
    cls = {"v4r2": WalletV4R2, "v5r1": WalletV5R1}[version]
    return cls.from_private_key(OfflineClient(network, deployed), PrivateKey(secret))


# --------------------------------------------------------------------------- seeds

def derive_keys(words, fmt, index):
    """Return (public_key, 64-byte secret) and cross-check with bip-utils/tonsdk."""
    ton_ok, bip_ok = ton_mnemonic_is_valid(words), multichain_mnemonic_is_valid(words)
    if fmt == "ton":
        assert ton_ok and not bip_ok
        pub, secret = mnemonic_to_private_key(words)
        seed = TonSeedGenerator(" ".join(words)).Generate(TonSeedTypes.PRIVATE_KEY)
        assert seed[:32] == secret[:32], "bip-utils TON seed mismatch"
        assert tsdk_mnemonic_to_wallet_key(words) == (pub, secret), "tonsdk mismatch"
    else:
        assert bip_ok and not ton_ok
        pub, secret = multichain_mnemonic_to_private_key(words, index)
        bip_seed = Bip39SeedGenerator(" ".join(words)).Generate("")
        slip10 = Bip32Slip10Ed25519.FromSeed(bip_seed).DerivePath(f"m/44'/607'/{index}'")
        assert slip10.PrivateKey().Raw().ToBytes() == secret[:32], "bip-utils SLIP-10 mismatch"
        bip44 = Bip44.FromSeed(bip_seed, Bip44Coins.TON).Purpose().Coin().Account(index)
        assert bip44.PrivateKey().Raw().ToBytes() == secret[:32], "bip-utils Bip44 TON mismatch"
        assert bip44.PublicKey().RawCompressed().ToBytes()[1:] == pub
    assert bytes(nacl.signing.SigningKey(secret[:32]).verify_key) == pub
    if fmt == "ton" or index == 0:
        # tonutils' own mnemonic path (auto-detects TON vs BIP39 by checksum)
        _, tu_pub, tu_priv, _ = WalletV4R2.from_mnemonic(OfflineClient(NetworkGlobalID.MAINNET, True), words)
        assert tu_pub.as_bytes == pub and tu_priv.as_bytes[:32] == secret[:32]
    return pub, secret


async def wallet_entry(version, pub, secret, network=NetworkGlobalID.MAINNET, with_state_init=True):
    w = tonutils_wallet(version, secret, network)
    si = w.state_init.serialize()
    assert si.hash == w.address.hash_part
    entry = {"wallet_id": w.config.subwallet_id if version == "v4r2" else w.config.subwallet_id.pack()}
    entry.update(address_forms(w.address))
    if with_state_init:
        entry["state_init_boc"] = to_b64(si)
        entry["state_init_hash"] = check_hash_with_tonsdk(si)

    # pytoniq builds the same StateInit / address on its own
    provider = OfflineLiteClient()
    if version == "v4r2":
        pq = await PqWalletV4R2.from_data(provider=provider, public_key=pub, private_key=secret)
        # tonsdk (independent cells) and bip-utils agree on the v4r2 address
        ts = TsdkWalletV4R2(public_key=pub, private_key=secret, wc=0)
        assert ts.address.to_string(False) == entry["raw"]
        assert Ton(secret[:32]).GetAddress(TonAddrVersions.V4, True) == entry["bounceable"]
    else:
        pq = await PqWalletV5R1.from_private_key(provider, secret, network_global_id=int(network))
        if network == NetworkGlobalID.MAINNET:
            assert Ton(secret[:32]).GetAddress(TonAddrVersions.V5R1, True) == entry["bounceable"]
    assert pq.address.to_str(is_user_friendly=False) == entry["raw"]
    assert pq.state_init.serialize().hash == si.hash
    assert pq.wallet_id == entry["wallet_id"]
    return entry


async def build_seeds():
    seeds, keys = [], {}
    for name, mnemonic, fmt, index in SEEDS:
        pub, secret = derive_keys(mnemonic.split(), fmt, index)
        keys[name] = (pub, secret, index)
        v4 = await wallet_entry("v4r2", pub, secret)
        v5 = await wallet_entry("v5r1", pub, secret)
        v5t = await wallet_entry("v5r1", pub, secret, NetworkGlobalID.TESTNET, with_state_init=False)
        assert v4["wallet_id"] == V4R2_WALLET_ID
        assert v5["wallet_id"] == V5R1_MAINNET_ID and v5t["wallet_id"] == V5R1_TESTNET_ID
        seeds.append({
            "name": name, "mnemonic": mnemonic, "format": fmt, "account_index": index,
            "public_key": pub.hex(), "secret_seed": secret[:32].hex(),
            "v4r2": v4, "v5r1": v5, "v5r1_testnet": v5t,
        })
    art = seeds[0]
    assert art["public_key"] == KNOWN_ART_HOCKEY["public_key"]
    assert art["v4r2"]["raw"] == KNOWN_ART_HOCKEY["v4r2_raw"]
    return seeds, keys


# --------------------------------------------------------------------------- transfers

def body_cell(body):
    """The body argument handed to the library (not a Cell we built)."""
    if body["kind"] == "none":
        return None
    if body["kind"] == "comment":
        return body["text"]           # the library turns text into a comment cell
    return from_b64(body["boc"])


def unpack_wallet_body(version, body):
    """Read (signature, signed part, [(mode, internal message cell)]) from a signed body."""
    s = body.begin_parse()
    if version == "v4r2":
        signature = s.load_bytes(64)
        signed = Builder().store_slice(s.copy()).end_cell()
        s.skip_bits(32 + 32 + 32 + 8)        # wallet_id, valid_until, seqno, op
        out = [(s.load_uint(8), s.load_ref()) for _ in range(s.remaining_refs)]
    else:
        bits = body.begin_parse()
        signed = Builder().store_bits(bits.load_bits(len(body.bits) - 512))
        for r in body.refs:
            signed.store_ref(r)
        signed = signed.end_cell()
        signature = bits.load_bytes(64)
        s.skip_bits(32 + 32 + 32 + 32)       # op, wallet_id, valid_until, seqno
        assert s.load_bit() == 1             # Maybe OutList
        actions, out = s.load_ref(), []
        while len(actions.bits) > 0:         # out_list: prev:^OutList action
            a = actions.begin_parse()
            prev = a.load_ref()
            assert a.load_uint(32) == 0x0EC3C86D     # action_send_msg
            out.append((a.load_uint(8), a.load_ref()))
            actions = prev
        out.reverse()
        assert s.load_bit() == 0             # no extended actions
    return signature, signed, out


def inspect_internal(cell):
    """bounce flag, body placement and the body cell of an internal message."""
    s = cell.begin_parse()
    info = InternalMsgInfo.deserialize(s)
    if s.load_bit():                         # Maybe StateInit
        raise AssertionError("unexpected state init in internal message")
    body_in_ref = bool(s.load_bit())
    return info, body_in_ref, MessageAny.deserialize(cell.begin_parse()).body


def comment_chunks(body):
    """Split of a snake-encoded comment as it sits in the cells."""
    s = body.begin_parse()
    assert s.load_uint(32) == 0
    chunks, c = [], s
    while True:
        chunks.append(c.load_bytes(len(c.bits) // 8))
        if not c.remaining_refs:
            break
        c = c.load_ref().begin_parse()
    return chunks


def utf8_splits(chunks):
    """Byte offsets where a cell boundary falls inside a UTF-8 character."""
    offsets, off = [], 0
    for chunk in chunks[:-1]:
        off += len(chunk)
        if (b"".join(chunks)[off] & 0xC0) == 0x80:
            offsets.append(off)
    return offsets


def hand_normalized_hash(dest_raw, body):
    """TEP-467 normalization built with tonsdk cells (independent from ton_core)."""
    c = tsdk_boc.Cell()
    c.bits.write_uint(2, 2)                  # ext_in_msg_info$10
    c.bits.write_address(None)               # src: addr_none
    c.bits.write_address(TsdkAddress(dest_raw))
    c.bits.write_grams(0)                    # import_fee
    c.bits.write_bit(0)                      # no state init
    c.bits.write_bit(1)                      # body as a reference
    c.refs.append(tonsdk_cell(body))
    return bytes(c.bytes_hash()).hex()


def pytoniq_signed_body(version, secret, wallet_id, seqno, valid_until, messages):
    """Same transfer through pytoniq's wallet code."""
    wms = [PqWallet.create_wallet_internal_message(
        destination=Address(m["destination"]), send_mode=SEND_MODE, value=int(m["amount"]),
        body=body_cell(m["body"])) for m in messages]
    if version == "v4r2":
        return PqWalletV4.raw_create_transfer_msg(
            private_key=secret, seqno=seqno, wallet_id=wallet_id, messages=wms, valid_until=valid_until)
    cls = PqWalletV5R1
    return cls.raw_create_transfer_msg(cls, private_key=secret, seqno=seqno, wallet_id=wallet_id,
                                       messages=wms, valid_until=valid_until)


def tonsdk_transfer(secret, pub, seqno, valid_until, m):
    """Single-message v4r2 transfer through tonsdk (its own cells and signing)."""
    saved = tsdk_v4_module.time
    tsdk_v4_module.time = types.SimpleNamespace(time=lambda: valid_until - 60)
    try:
        payload = body_cell(m["body"])
        if isinstance(payload, Cell):
            payload = tonsdk_cell(payload)
        w = TsdkWalletV4R2(public_key=pub, private_key=secret, wc=0)
        return w.create_transfer_message(m["destination"], int(m["amount"]), seqno,
                                         payload=payload, send_mode=SEND_MODE)
    finally:
        tsdk_v4_module.time = saved


async def build_transfer(spec, keys, findings):
    name, seed, version, seqno, valid_until, messages, expected = spec
    pub, secret, index = keys[seed]
    deploy = seqno == 0
    wallet = tonutils_wallet(version, secret, deployed=not deploy)
    params = (WalletV4Params if version == "v4r2" else WalletV5Params)(seqno=seqno, valid_until=valid_until)
    builders = [TONTransferBuilder(destination=m["destination"], amount=int(m["amount"]),
                                   body=body_cell(m["body"]), send_mode=SEND_MODE) for m in messages]
    ext = await wallet.build_external_message(builders, params)
    ext_cell = ext.to_cell()
    body = ext.body
    assert (ext.init is not None) == deploy

    # signature
    signature, signed, internals = unpack_wallet_body(version, body)
    nacl.signing.VerifyKey(pub).verify(signed.hash, signature)

    # what actually went into the internal messages
    out_messages = []
    assert len(internals) == len(messages)
    for m, (mode, cell) in zip(messages, internals):
        info, body_in_ref, ibody = inspect_internal(cell)
        assert mode == SEND_MODE
        assert info.dest.to_str(is_user_friendly=False) == Address(m["destination"]).to_str(is_user_friendly=False)
        assert info.value.grams == int(m["amount"])
        entry = {"destination": m["destination"], "amount": m["amount"], "bounce": info.bounce,
                 "mode": mode, "body": dict(m["body"]), "body_in_ref": body_in_ref}
        if m["body"]["kind"] == "none":
            assert len(ibody.bits) == 0 and not ibody.refs
        elif m["body"]["kind"] == "boc":
            assert ibody.hash == from_b64(m["body"]["boc"]).hash
        else:
            chunks = comment_chunks(ibody)
            assert b"".join(chunks).decode() == m["body"]["text"]
            entry["body"]["chunk_bytes"] = [len(c) for c in chunks]
            entry["body"]["utf8_char_split_at"] = utf8_splits(chunks)
        form = ("raw" if ":" in m["destination"] else
                "bounceable" if Address(m["destination"]).is_bounceable else "non_bounceable")
        findings.setdefault(("tonutils", form), set()).add(info.bounce)
        out_messages.append(entry)

    message_hash = check_hash_with_tonsdk(ext_cell)
    body_hash = check_hash_with_tonsdk(body)
    normalized = normalize_hash(ext)
    assert normalized == hand_normalized_hash(wallet.address.to_str(is_user_friendly=False), body)
    if expected:
        assert (message_hash, normalized) == expected, (name, message_hash, normalized)

    # pytoniq: same signed body and same external message (it forces 0xFFFFFFFF at seqno 0)
    crosschecked = ["pytoniq"] if (not deploy or valid_until == NO_EXPIRY) else []
    if crosschecked:
        wallet_id = wallet.config.subwallet_id if version == "v4r2" else wallet.config.subwallet_id.pack()
        pq_body = pytoniq_signed_body(version, secret, wallet_id, seqno, valid_until, messages)
        assert pq_body.hash == body.hash, name
        pq_ext = PqContract.create_external_msg(dest=wallet.address, body=pq_body,
                                                state_init=wallet.state_init if deploy else None)
        assert pq_ext.serialize().hash == ext_cell.hash, name
        for m in messages:
            pq_bounce = Address(m["destination"]).is_bounceable
            form = "raw" if ":" in m["destination"] else ("bounceable" if pq_bounce else "non_bounceable")
            findings.setdefault(("pytoniq", form), set()).add(pq_bounce)
    # tonsdk: one-message v4r2 with bodies that fit its plain (non-snake) comment writer
    m0 = messages[0]
    if (version == "v4r2" and len(messages) == 1 and (not deploy or valid_until == NO_EXPIRY)
            and not (m0["body"]["kind"] == "comment" and len(m0["body"]["text"].encode()) > 123)):
        ts = tonsdk_transfer(secret, pub, seqno, valid_until, m0)
        assert bytes(ts["body"].bytes_hash()) == body.hash, name
        assert bytes(ts["message"].bytes_hash()) == ext_cell.hash, name
        crosschecked.append("tonsdk")
        form = "raw" if ":" in m0["destination"] else ("bounceable" if TsdkAddress(m0["destination"]).is_bounceable else "non_bounceable")
        hdr = ts["signing_message"].refs[0]       # tonsdk's internal message: bit 3 = bounce
        findings.setdefault(("tonsdk", form), set()).add(bool(hdr.bits.array[0] & 0x20))

    s = ext_cell.begin_parse()
    s.skip_bits(len(ext.info.serialize().bits))
    layout = {"state_init": "none", "body": None}
    if s.load_bit():
        layout["state_init"] = "ref" if s.load_bit() else "inline"
        if layout["state_init"] == "inline":
            StateInit.deserialize(s)
        else:
            s.load_ref()
    layout["body"] = "ref" if s.load_bit() else "inline"

    return {
        "name": name, "library": "tonutils",
        "crosschecked_with": crosschecked,
        "seed": seed, "account_index": index, "wallet": version, "network": "mainnet",
        "wallet_address": wallet.address.to_str(is_user_friendly=False),
        "seqno": seqno, "valid_until": valid_until, "state_init": deploy,
        "messages": out_messages,
        "external_boc": to_b64(ext_cell), "message_hash": message_hash,
        "normalized_hash": normalized, "body_hash": body_hash,
        "external_layout": layout,
    }


# --------------------------------------------------------------------------- main

LIBS = ["tonutils", "ton-core", "pytoniq-core", "pytoniq", "tonsdk", "bip-utils", "pynacl"]


async def main():
    check_pytoniq_core_files()
    seeds, keys = await build_seeds()
    findings = {}
    transfers = [await build_transfer(spec, keys, findings) for spec in TRANSFERS]

    # bounce flag chosen by each library, per destination form
    bounce = {f"{lib}/{form}": sorted(v) for (lib, form), v in sorted(findings.items())}
    for key, values in bounce.items():
        assert len(values) == 1, (key, values)
        assert values[0] == key.endswith("/bounceable"), (key, values)

    notes = [
        "Keys: TON-native mnemonics via ton_core mnemonic_to_private_key (= pytoniq-core), also checked "
        "against bip_utils TonSeedGenerator and tonsdk mnemonic_to_wallet_key. secret_seed is the 32-byte "
        "ed25519 seed (first half of the 64-byte libsodium secret key).",
        "BIP39 seeds: ton_core.contrib.utils.multichain_mnemonic_to_private_key = BIP39 seed (empty "
        "passphrase) then SLIP-10 ed25519 at m/44'/607'/{account_index}' (all hardened). bip_utils "
        "Bip39SeedGenerator+Bip32Slip10Ed25519.DerivePath(\"m/44'/607'/i'\") and "
        "Bip44(Bip44Coins.TON).Purpose().Coin().Account(i) agree for i=0,1,5. For index 0, tonutils "
        "from_mnemonic auto-detects BIP39 by checksum and gives the same key.",
        "Every TON mnemonic here is not a valid BIP39 phrase and every BIP39 phrase is not a valid TON "
        "mnemonic (ton_mnemonic_is_valid / multichain_mnemonic_is_valid).",
        "Wallets: tonutils WalletV4R2/WalletV5R1.from_private_key (code from ton_core CONTRACT_CODES). "
        "pytoniq WalletV4R2/WalletV5R1 give the same StateInit hash and wallet_id; tonsdk WalletV4ContractR2 "
        "and bip_utils (v4, v5r1 mainnet) give the same addresses. Address strings checked against tonsdk.",
        f"v4r2 wallet_id {V4R2_WALLET_ID}. v5r1 wallet_id = context ^ network_global_id: mainnet (-239) "
        f"{V5R1_MAINNET_ID}, testnet (-3) {V5R1_TESTNET_ID}; tonutils takes it from the client's network. "
        "v5r1_testnet is a different StateInit, so a different address.",
        "Transfers: tonutils BaseWallet.build_external_message([TONTransferBuilder(...)], "
        "WalletV4Params/WalletV5Params(seqno, valid_until)) against an offline client that reports the "
        "wallet ACTIVE (NONEXIST for seqno 0, so tonutils attaches the StateInit). send_mode 3 everywhere.",
        "Bounce flag = the 'bounceable' bit of the destination string in tonutils, pytoniq and tonsdk: "
        "EQ../kQ.. -> true, UQ../0Q.. -> false, raw 'wc:hex' -> false (raw carries no flag and all three "
        "default to false). Observed: " + json.dumps(bounce, sort_keys=True),
        "Comments: 32-bit zero op, then UTF-8 bytes snake-encoded (Builder.store_snake_string): 123 bytes in "
        "the first cell, 127 bytes in each further cell, chained through ref 0. Bytes are cut at cell "
        "boundaries without regard to UTF-8 characters (chunk_bytes / utf8_char_split_at per message).",
        "Cell layout (pytoniq-core MessageAny.serialize): the body of an internal or external message, and "
        "the StateInit of the external message, are stored inline when their bits and refs fit, otherwise "
        "as a ref (body_in_ref per message, external_layout per transfer). This changes message_hash but not "
        "normalized_hash.",
        "Fragment BoC payloads are unpadded base64; they are padded before decoding and the cell is attached "
        "unchanged (same hash). The 'boc' field repeats the input string as given.",
        "normalized_hash: ton_core normalize_hash (ext_in_msg_info, src addr_none, import_fee 0, no "
        "StateInit, body as ref), recomputed by hand with tonsdk cells. message_hash/body_hash: cell hashes, "
        "recomputed by tonsdk from the BoC. body_hash is the signed wallet body (external message body).",
        "Signatures verified with pynacl: v4r2 = signature (512 bits) then signed data; v5r1 = signed data "
        "then signature (last 512 bits); signed over the representation hash of the data cell.",
        "seqno 0: pytoniq and tonsdk always write valid_until 0xFFFFFFFF; tonutils writes the value passed. "
        "Deploy vectors with valid_until 4294967295 are cross-checked with pytoniq (and tonsdk); "
        "v5r1_bip39_deploy_seqno0 uses 1767225600 and comes from tonutils only.",
        "crosschecked_with lists the libraries that produced byte-identical signed bodies and external "
        "messages. pytoniq shares the pytoniq-core cell code with tonutils; tonsdk has its own.",
        "Every BoC is serialized with has_idx=False, hash_crc32=True; tonsdk re-serializes each one to "
        "the same bytes.",
    ]

    out = {
        "generator": "tests/vectors/gen_ton_vectors.py",
        "libraries": {lib: md.version(lib) for lib in LIBS},
        "boc_flags": "has_idx=false, hash_crc32=true, has_cache_bits=false (standard base64 with padding, "
                     "prefix 'te6cck')",
        "notes": notes,
        "seeds": seeds,
        "transfers": transfers,
    }
    json.dump(out, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    asyncio.run(main())
