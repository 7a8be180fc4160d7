"""Tokens from an external identity provider: RS256/ES256 with a pinned public key or a JWKS URL."""
from __future__ import annotations

import json
import socket
import time

import jwt
import pytest
import pytest_asyncio
import tornado.httpserver
import tornado.web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from chatd.app import start_server
from chatd.pytest_plugin import ChatdTestClient, test_settings

pytestmark = pytest.mark.asyncio


def claims(sub: str = "alice", **extra) -> dict:
    now = int(time.time())
    return {"sub": sub, "iat": now, "exp": now + 300, **extra}


def public_pem(private_key) -> str:
    return private_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo).decode()


class JWKSHandler(tornado.web.RequestHandler):
    def initialize(self, doc: dict, hits: list) -> None:
        self.doc, self.hits = doc, hits

    def get(self) -> None:
        self.hits.append(time.monotonic())
        self.write(json.dumps(self.doc))


@pytest_asyncio.fixture
async def idp():
    """A local identity provider serving a JWKS document with one RSA key (kid k1)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    doc = {"keys": [dict(jwk, kid="k1", alg="RS256", use="sig")]}
    hits: list = []
    app = tornado.web.Application([(r"/jwks.json", JWKSHandler, {"doc": doc, "hits": hits})])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    server = tornado.httpserver.HTTPServer(app)
    server.add_sockets([sock])
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/jwks.json"
    yield {"key": key, "url": url, "doc": doc, "hits": hits}
    server.stop()


async def start(tmp_path, **overrides):
    server = await start_server(test_settings(tmp_path, **overrides))
    return ChatdTestClient(server)


async def test_jwks_tokens_are_accepted_and_foreign_ones_refused(tmp_path, idp):
    client = await start(tmp_path, jwt_algorithm="RS256", jwt_jwks_url=idp["url"], jwt_issuer="https://id.test/")
    try:
        good = jwt.encode(claims(iss="https://id.test/"), idp["key"], algorithm="RS256", headers={"kid": "k1"})
        ws = await client.ws(good)
        assert ws.frames[-1]["user_id"] == "alice"
        status, body, _ = await client.request("GET", "/api/v1/me", good)
        assert status == 200 and body["id"] == "alice"

        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        refused = {
            "unknown kid": jwt.encode(claims(iss="https://id.test/"), other, algorithm="RS256", headers={"kid": "k9"}),
            "wrong key, known kid": jwt.encode(claims(iss="https://id.test/"), other, algorithm="RS256",
                                               headers={"kid": "k1"}),
            "wrong issuer": jwt.encode(claims(iss="https://evil.test/"), idp["key"], algorithm="RS256",
                                       headers={"kid": "k1"}),
            # Algorithm substitution: HS256 signed with the public key's text as the secret.
            "hs256 with public key": jwt.encode(claims(iss="https://id.test/"), "x" * 64, algorithm="HS256",
                                                headers={"kid": "k1"}),
        }
        for name, token in refused.items():
            ws = await client.ws()
            await ws.send({"type": "auth", "token": token})
            code, reason = await ws.closed()
            assert (code, reason) == (4001, "Invalid token"), name
        # Accounts are the IdP's: chatd neither registers nor signs tokens.
        status, body, _ = await client.request("POST", "/api/v1/auth/register",
                                               body={"username": "bob", "password": "long enough"})
        assert status == 403 and body["error"]["code"] == "FORBIDDEN"
    finally:
        client.close()
        await client.server.stop()


async def test_rotated_key_is_fetched_again_but_not_on_every_token(tmp_path, idp):
    client = await start(tmp_path, jwt_algorithm="RS256", jwt_jwks_url=idp["url"])
    try:
        assert len(idp["hits"]) == 1  # fetched at start-up
        client.server.app.settings["tokens"]._jwks_fetched -= 60  # pretend the last fetch is a minute old
        new_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(new_key.public_key()))
        idp["doc"]["keys"].append(dict(jwk, kid="k2", alg="RS256"))
        token = jwt.encode(claims(), new_key, algorithm="RS256", headers={"kid": "k2"})
        await client.ws(token)
        assert len(idp["hits"]) == 2
        for _ in range(3):  # unknown kids right after a fetch do not hammer the IdP
            ws = await client.ws()
            await ws.send({"type": "auth", "token": jwt.encode(claims(), new_key, algorithm="RS256",
                                                               headers={"kid": "nope"})})
            assert (await ws.closed())[0] == 4001
        assert len(idp["hits"]) == 2
    finally:
        client.close()
        await client.server.stop()


async def test_es256_with_pinned_public_key(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    client = await start(tmp_path, jwt_algorithm="ES256", jwt_public_key=public_pem(key))
    try:
        ws = await client.ws(jwt.encode(claims("svc-1", roles=["service"]), key, algorithm="ES256"))
        assert ws.frames[-1]["user_id"] == "svc-1"
        other = ec.generate_private_key(ec.SECP256R1())
        ws = await client.ws()
        await ws.send({"type": "auth", "token": jwt.encode(claims(), other, algorithm="ES256")})
        assert await ws.closed() == (4001, "Invalid token")
    finally:
        client.close()
        await client.server.stop()
