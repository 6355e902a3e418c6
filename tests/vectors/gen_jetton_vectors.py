"""Independent-reference TEP-74 jetton message bodies, for the Rust jetton module.

Produces tests/vectors/jetton_vectors.json: `transfer` bodies (op 0x0f8a7ea5) on seeded
random inputs, built by tonutils' ton_core (JettonTransferBody), never by the Rust code,
plus `internal_transfer` bodies (JettonInternalTransferBody). Each entry has its inputs,
the BOC ton_core serialises, and the cell's hash, and is parsed back by ton_core to check
the round trip.

Deterministic (random.Random(74)). Run with the packages of tests/python/requirements.txt
(tonutils 2.5.1, ton-core 0.7.1, pytoniq-core 0.2.1):

  python3 tests/vectors/gen_jetton_vectors.py > tests/vectors/jetton_vectors.json

Only JSON goes to stdout.
"""

import base64
import importlib.metadata as md
import json
import random

from ton_core import Address, Cell
from ton_core.boc import begin_cell
from ton_core.contrib.contracts.jetton.tlb import JettonInternalTransferBody, JettonTransferBody

rng = random.Random(74)


def address():
    workchain = rng.choice([0, 0, 0, -1])
    return Address((workchain, rng.randbytes(32))).to_str(is_user_friendly=False)


def comment(text):
    return begin_cell().store_uint(0, 32).store_snake_string(text).end_cell()


def maybe_cell():
    roll = rng.random()
    if roll < 0.3:
        return None, None
    text = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz #0123456789") for _ in range(rng.randint(0, 200)))
    return comment(text), text


def coins():
    # Small, typical, and the edges of what fits in 64 bits.
    return rng.choice([0, 1, rng.randint(2, 10**6), rng.randint(10**6, 10**12), 2**64 - 1, rng.randint(1, 2**64 - 1)])


def b64(cell):
    return base64.b64encode(cell.to_boc()).decode()


def transfer_vector(i):
    dest = address()
    response = address() if rng.random() < 0.8 else None
    custom, custom_text = maybe_cell() if rng.random() < 0.2 else (None, None)
    forward, forward_text = maybe_cell()
    inputs = {
        "query_id": rng.choice([0, rng.randint(1, 2**64 - 1)]),
        "amount": coins(),
        "destination": dest,
        "response_destination": response,
        "custom_payload_comment": custom_text,
        "forward_ton_amount": coins(),
        "forward_payload_comment": forward_text,
    }
    body = JettonTransferBody(
        destination=Address(dest),
        jetton_amount=inputs["amount"],
        response_address=Address(response) if response else None,
        custom_payload=custom,
        forward_payload=forward,
        forward_amount=inputs["forward_ton_amount"],
        query_id=inputs["query_id"],
    ).serialize()
    back = JettonTransferBody.deserialize(body.begin_parse())
    assert back.jetton_amount == inputs["amount"] and back.query_id == inputs["query_id"]
    assert back.forward_amount == inputs["forward_ton_amount"]
    return {"name": f"transfer_{i}", "kind": "transfer", "inputs": inputs, "boc": b64(body), "hash": body.hash.hex()}


def internal_vector(i):
    sender = address() if rng.random() < 0.9 else None
    response = address() if rng.random() < 0.8 else None
    forward, forward_text = maybe_cell()
    inputs = {
        "query_id": rng.randint(0, 2**64 - 1),
        "amount": coins(),
        "from": sender,
        "response_destination": response,
        "forward_ton_amount": coins(),
        "forward_payload_comment": forward_text,
    }
    body = JettonInternalTransferBody(
        jetton_amount=inputs["amount"],
        forward_amount=inputs["forward_ton_amount"],
        from_address=Address(sender) if sender else None,
        response_address=Address(response) if response else None,
        forward_payload=forward,
        query_id=inputs["query_id"],
    ).serialize()
    return {"name": f"internal_{i}", "kind": "internal_transfer", "inputs": inputs, "boc": b64(body), "hash": body.hash.hex()}


vectors = [transfer_vector(i) for i in range(64)] + [internal_vector(i) for i in range(16)]
print(json.dumps({
    "source": "ton_core JettonTransferBody / JettonInternalTransferBody (tonutils " + md.version("tonutils")
              + ", ton-core " + md.version("ton-core") + "), random.Random(74)",
    "comment_encoding": "op 0 then the text as a snake string (pytoniq-core store_snake_string)",
    "vectors": vectors,
}, indent=1))
