"""Signed checkpoints: every active seller's head, signed with the platform's key, verifiable with
the published public key; signing again adds nothing; a retired key stays published."""

import base64

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.test import override_settings

from ledger.models import Account, ChainCheckpoint
from ledger.statements import signing
from ledger.statements.checkpoints import checkpoint_at, checkpoints_sign_active
from ledger.statements.signing import checkpoint_message
from tests.factories import client_for, make_admin, make_seller, request_and_approve
from tests.statements.history import busy_history
from tests.support import assert_ledger_audit
from workers.statement_tasks import sign_checkpoints_task

pytestmark = pytest.mark.django_db


def _verify(checkpoint: dict, public_key: str) -> None:
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key))
    message = checkpoint_message(
        key_id=checkpoint["key_id"],
        seller_id=checkpoint["seller"],
        seq=checkpoint["seq"],
        hash_=bytes.fromhex(checkpoint["hash"]),
        balance=checkpoint["balance"],
        entry_created_at=None
        if checkpoint["entry_created_at"] is None
        else ChainCheckpoint._meta.get_field("signed_at").to_python(checkpoint["entry_created_at"]),
        signed_at=ChainCheckpoint._meta.get_field("signed_at").to_python(checkpoint["signed_at"]),
    )
    key.verify(base64.b64decode(checkpoint["signature"]), message)


def test_the_periodic_signing_signs_each_active_head_once():
    seller, idle = busy_history(rounds=3), make_seller()
    assert sign_checkpoints_task() >= 1
    account = Account.objects.get(seller=seller)
    checkpoint = ChainCheckpoint.objects.get(seller=seller)
    assert (checkpoint.seq, bytes(checkpoint.hash), checkpoint.balance) == (
        account.last_seq,
        bytes(account.last_hash),
        account.balance,
    )
    assert not ChainCheckpoint.objects.filter(seller=idle).exists()
    assert checkpoints_sign_active() == 0  # nothing moved since

    request_and_approve(seller, 100, make_admin())
    from ledger.services.settlement import settle_seller

    settle_seller(seller_id=seller.pk)
    assert checkpoints_sign_active() == 1
    assert ChainCheckpoint.objects.filter(seller=seller).count() == 2
    assert_ledger_audit(seller.pk)


def test_a_checkpoint_verifies_with_the_published_key_and_not_with_another():
    seller = busy_history(rounds=2)
    checkpoints_sign_active()
    keys = client_for(seller.user).get("/api/v1/statements/public-key/").json()["keys"]
    anonymous = client_for(None).get("/api/v1/statements/public-key/")
    assert anonymous.status_code == 200 and anonymous.json()["keys"] == keys
    [current] = keys
    listed = client_for(seller.user).get("/api/v1/checkpoints/").json()["results"]
    assert len(listed) == 1 and listed[0]["key_id"] == current["key_id"]
    _verify(listed[0], current["public_key"])

    other = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    with pytest.raises(InvalidSignature):
        _verify(listed[0], base64.b64encode(other).decode())
    tampered = dict(listed[0], balance=listed[0]["balance"] + 1)
    with pytest.raises(InvalidSignature):
        _verify(tampered, current["public_key"])
    assert client_for(make_seller().user).get("/api/v1/checkpoints/").json()["results"] == []


def test_signing_the_same_head_again_answers_the_same_checkpoint():
    seller = busy_history(rounds=2)
    first = checkpoint_at(seller_id=seller.pk, seq=2)
    again = checkpoint_at(seller_id=seller.pk, seq=2)
    assert first.pk == again.pk
    genesis = checkpoint_at(seller_id=seller.pk, seq=0)
    assert (bytes(genesis.hash), genesis.balance, genesis.entry_created_at) == (bytes(32), 0, None)


def test_after_a_rotation_the_retired_key_stays_published_and_new_heads_use_the_new_one():
    seller = busy_history(rounds=2)
    old = checkpoint_at(seller_id=seller.pk, seq=1)
    old_public = [k for k in signing.published_keys() if k.current][0]
    new_private = base64.b64encode(Ed25519PrivateKey.generate().private_bytes_raw()).decode()
    with override_settings(STATEMENT_SIGNING_KEY=new_private, STATEMENT_RETIRED_PUBLIC_KEYS=[old_public.base64]):
        signing.signing_key.cache_clear()
        try:
            keys = client_for(seller.user).get("/api/v1/statements/public-key/").json()["keys"]
            assert [(k["key_id"], k["current"]) for k in keys][1] == (old.key_id, False)
            new = checkpoint_at(seller_id=seller.pk, seq=1)
            assert new.key_id == keys[0]["key_id"] != old.key_id
        finally:
            signing.signing_key.cache_clear()


def test_without_a_configured_key_the_public_keys_are_only_the_retired_ones():
    retired = base64.b64encode(Ed25519PrivateKey.generate().public_key().public_bytes_raw()).decode()
    with override_settings(STATEMENT_SIGNING_KEY="", STATEMENT_RETIRED_PUBLIC_KEYS=[retired]):
        signing.signing_key.cache_clear()
        try:
            keys = client_for(None).get("/api/v1/statements/public-key/").json()["keys"]
        finally:
            signing.signing_key.cache_clear()
    assert [(k["public_key"], k["current"]) for k in keys] == [(retired, False)]
