"""Specification of platform JWKS fetching, caching and refetching."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import jwt
import pytest
import requests
import urllib3
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from plugin.errors import LaunchError
from plugin.platform_keys import MEMORY_TTL, FetchError, KeyMemory, PlatformKeySet, requests_fetch


def refused(key_set, kid, now, code) -> LaunchError:
    with pytest.raises(LaunchError) as caught:
        key_set.key_for(kid, now=now)
    assert caught.value.code == code, caught.value
    assert caught.value.hint
    return caught.value


# --- caching ---------------------------------------------------------------------------


def test_first_use_fetches_and_stores_the_key_set(key_set, lti, fetch, jwks_store):
    key = key_set.key_for(lti.platform_key.kid, now=lti.now)

    assert isinstance(key, jwt.PyJWK)
    assert key.algorithm_name == "RS256"
    assert fetch.calls == [lti.jwks_url]
    document, fetched_at = jwks_store.documents[lti.jwks_url]
    assert fetched_at == lti.now
    assert json.loads(document)["keys"][0]["kid"] == lti.platform_key.kid


def test_cached_key_set_is_used_without_fetching(key_set, lti, fetch):
    key_set.key_for(lti.platform_key.kid, now=lti.now)

    key_set.key_for(lti.platform_key.kid, now=lti.now + timedelta(hours=23))

    assert len(fetch.calls) == 1


def test_cache_is_shared_between_processes(make_key_set, lti, fetch):
    make_key_set(fetch).key_for(lti.platform_key.kid, now=lti.now)

    make_key_set(fetch).key_for(lti.platform_key.kid, now=lti.now + timedelta(seconds=1))

    assert len(fetch.calls) == 1


def test_cache_older_than_max_age_is_refetched(key_set, lti, fetch):
    key_set.key_for(lti.platform_key.kid, now=lti.now)

    key_set.key_for(lti.platform_key.kid, now=lti.now + timedelta(hours=24, seconds=1))

    assert len(fetch.calls) == 2


def test_max_age_is_configurable(make_key_set, lti, fetch):
    key_set = make_key_set(fetch, max_age=timedelta(hours=1))
    key_set.key_for(lti.platform_key.kid, now=lti.now)

    key_set.key_for(lti.platform_key.kid, now=lti.now + timedelta(hours=2))

    assert len(fetch.calls) == 2


def test_stale_cache_is_not_used_when_the_refetch_fails(key_set, lti, fetch):
    key_set.key_for(lti.platform_key.kid, now=lti.now)
    fetch.serve(FetchError("connection refused"))

    refused(key_set, lti.platform_key.kid, lti.now + timedelta(hours=25), "jwks-unreachable")


def test_corrupt_cache_entry_is_refetched(key_set, lti, fetch, jwks_store):
    jwks_store.put(lti.jwks_url, "not json", lti.now)

    key_set.key_for(lti.platform_key.kid, now=lti.now)

    assert len(fetch.calls) == 1


# --- a process's copy of the keys --------------------------------------------------------


class CountingStore:
    """The shared store, counting reads: what a launch costs in round trips."""

    def __init__(self, store) -> None:
        self.store, self.reads = store, 0

    def get(self, jwks_url):
        self.reads += 1
        return self.store.get(jwks_url)

    def put(self, jwks_url, jwks_json, fetched_at):
        self.store.put(jwks_url, jwks_json, fetched_at)

    def try_begin_fetch(self, jwks_url, now, min_interval):
        return self.store.try_begin_fetch(jwks_url, now, min_interval)


def test_a_process_verifies_with_its_copy_without_reading_the_store_again(lti, fetch, jwks_store):
    store, memory = CountingStore(jwks_store), KeyMemory()
    first = PlatformKeySet(lti.jwks_url, fetch, store, memory=memory).key_for(lti.platform_key.kid, now=lti.now)
    reads = store.reads

    again = PlatformKeySet(lti.jwks_url, fetch, store, memory=memory).key_for(
        lti.platform_key.kid, now=lti.now + timedelta(minutes=1))

    assert again is first and store.reads == reads and len(fetch.calls) == 1


def test_a_kid_the_copy_lacks_goes_to_the_store_and_the_rotated_key_is_found(lti, fetch, jwks_store):
    key_set = PlatformKeySet(lti.jwks_url, fetch, jwks_store, memory=KeyMemory())
    key_set.key_for(lti.platform_key.kid, now=lti.now)
    fetch.serve(lti.jwks(lti.platform_key, lti.rotated_key))

    key = key_set.key_for(lti.rotated_key.kid, now=lti.now + timedelta(minutes=2))

    assert key.key_id == lti.rotated_key.kid and len(fetch.calls) == 2


def test_a_key_another_process_saw_withdrawn_stops_working_here_after_the_copy_ages(lti, fetch, jwks_store):
    here = PlatformKeySet(lti.jwks_url, fetch, jwks_store, memory=KeyMemory())
    here.key_for(lti.platform_key.kid, now=lti.now)
    # Another process meets the rotated kid and refetches: the old key is gone from the set.
    fetch.serve(lti.jwks(lti.rotated_key))
    PlatformKeySet(lti.jwks_url, fetch, jwks_store).key_for(lti.rotated_key.kid, now=lti.now + timedelta(minutes=2))

    assert here.key_for(lti.platform_key.kid, now=lti.now + timedelta(minutes=3))  # the copy, for now
    refused(here, lti.platform_key.kid, lti.now + MEMORY_TTL + timedelta(seconds=1), "kid-unknown")


def test_the_copy_never_outlives_the_key_sets_max_age(lti, fetch, jwks_store):
    memory = KeyMemory(ttl=timedelta(days=7))
    key_set = PlatformKeySet(lti.jwks_url, fetch, jwks_store, memory=memory)
    key_set.key_for(lti.platform_key.kid, now=lti.now)
    fetch.serve(FetchError("connection refused"))

    refused(key_set, lti.platform_key.kid, lti.now + timedelta(hours=24, seconds=1), "jwks-unreachable")


# --- unknown kid and the refetch rate limit --------------------------------------------


def test_unknown_kid_refetches_and_finds_the_rotated_key(key_set, lti, fetch):
    key_set.key_for(lti.platform_key.kid, now=lti.now)
    fetch.serve(lti.jwks(lti.platform_key, lti.rotated_key))

    key = key_set.key_for(lti.rotated_key.kid, now=lti.now + timedelta(minutes=2))

    assert key.key_id == lti.rotated_key.kid
    assert len(fetch.calls) == 2


def test_kid_still_unknown_after_refetch_is_refused(key_set, lti, fetch):
    key_set.key_for(lti.platform_key.kid, now=lti.now)

    error = refused(key_set, "no-such-kid", lti.now + timedelta(minutes=2), "kid-unknown")

    assert len(fetch.calls) == 2
    assert error.details["kid"] == "no-such-kid"


def test_unknown_kid_refetch_is_rate_limited_to_once_a_minute(key_set, lti, fetch):
    key_set.key_for(lti.platform_key.kid, now=lti.now)
    later = lti.now + timedelta(minutes=5)

    refused(key_set, "made-up-1", later, "kid-unknown")
    refused(key_set, "made-up-2", later + timedelta(seconds=10), "kid-unknown")
    refused(key_set, "made-up-3", later + timedelta(seconds=59), "kid-unknown")
    assert len(fetch.calls) == 2

    refused(key_set, "made-up-4", later + timedelta(seconds=60), "kid-unknown")
    assert len(fetch.calls) == 3


def test_rate_limit_is_shared_between_processes(make_key_set, lti, fetch):
    make_key_set(fetch).key_for(lti.platform_key.kid, now=lti.now)

    refused(make_key_set(fetch), "made-up", lti.now + timedelta(seconds=30), "kid-unknown")

    assert len(fetch.calls) == 1


def test_rotated_key_is_found_once_the_rate_limit_window_passes(key_set, lti, fetch):
    key_set.key_for(lti.platform_key.kid, now=lti.now)
    fetch.serve(lti.jwks(lti.platform_key, lti.rotated_key))

    refused(key_set, lti.rotated_key.kid, lti.now + timedelta(seconds=20), "kid-unknown")
    key = key_set.key_for(lti.rotated_key.kid, now=lti.now + timedelta(seconds=61))

    assert key.key_id == lti.rotated_key.kid


def test_refetch_interval_is_configurable(make_key_set, lti, fetch):
    key_set = make_key_set(fetch, min_refetch_interval=timedelta(minutes=10))
    key_set.key_for(lti.platform_key.kid, now=lti.now)

    refused(key_set, "made-up", lti.now + timedelta(minutes=5), "kid-unknown")

    assert len(fetch.calls) == 1


# --- unreachable and malformed key sets --------------------------------------------------


def test_unreachable_jwks_url_is_refused_with_bad_gateway(key_set, lti, fetch):
    fetch.serve(FetchError("HTTP status 503"))

    error = refused(key_set, lti.platform_key.kid, lti.now, "jwks-unreachable")

    assert error.status == 400
    assert "HTTP status 503" in error.hint
    assert error.details["jwks_url"] == lti.jwks_url


def test_unreachable_jwks_url_is_not_hammered(key_set, lti, fetch):
    fetch.serve(FetchError("timeout"))
    refused(key_set, lti.platform_key.kid, lti.now, "jwks-unreachable")

    refused(key_set, lti.platform_key.kid, lti.now + timedelta(seconds=5), "jwks-unreachable")

    assert len(fetch.calls) == 1


def test_recovered_jwks_url_is_used_after_the_interval(key_set, lti, fetch):
    fetch.serve(FetchError("timeout"), lti.jwks(lti.platform_key))
    refused(key_set, lti.platform_key.kid, lti.now, "jwks-unreachable")

    assert key_set.key_for(lti.platform_key.kid, now=lti.now + timedelta(minutes=1))


@pytest.mark.parametrize(
    "body",
    [
        "<html><body>Please sign in</body></html>",
        "",
        "[]",
        '{"keys": {}}',
        '{"kty": "RSA"}',
        '{"keys": ["not-an-object"]}',
    ],
)
def test_malformed_jwks_is_refused_and_not_cached(key_set, lti, fetch, jwks_store, body):
    fetch.serve(body)

    error = refused(key_set, lti.platform_key.kid, lti.now, "jwks-malformed")

    assert error.status == 400
    assert lti.jwks_url not in jwks_store.documents


def test_duplicate_kid_is_refused(key_set, lti, fetch):
    fetch.serve(lti.jwks(lti.platform_key, {**lti.rotated_key.public_jwk, "kid": lti.platform_key.kid}))

    refused(key_set, lti.platform_key.kid, lti.now, "jwks-malformed")


# --- unsuitable keys -------------------------------------------------------------------


def test_ec_key_is_refused(key_set, lti, fetch):
    ec_jwk = jwt.algorithms.ECAlgorithm.to_jwk(
        ec.generate_private_key(ec.SECP256R1()).public_key(), as_dict=True
    )
    fetch.serve(lti.jwks({**ec_jwk, "kid": "ec-1"}))

    error = refused(key_set, "ec-1", lti.now, "key-unsuitable")

    assert "not RSA" in error.hint


@pytest.mark.parametrize(("member", "value"), [("use", "enc"), ("alg", "RS512"), ("alg", "HS256")])
def test_key_with_wrong_use_or_alg_is_refused(key_set, lti, fetch, member, value):
    fetch.serve(lti.jwks({**lti.platform_key.public_jwk, member: value}))

    refused(key_set, lti.platform_key.kid, lti.now, "key-unsuitable")


def test_rsa_key_shorter_than_2048_bits_is_refused(key_set, lti, fetch):
    # Deliberately weak: the platform publishing it is what is being refused.
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
    weak_jwk = jwt.algorithms.RSAAlgorithm.to_jwk(weak.public_key(), as_dict=True)
    fetch.serve(lti.jwks({**weak_jwk, "kid": "weak"}))

    error = refused(key_set, "weak", lti.now, "key-unsuitable")

    assert "1024 bits" in error.hint


def test_rsa_key_without_modulus_is_refused(key_set, lti, fetch):
    broken = {k: v for k, v in lti.platform_key.public_jwk.items() if k != "n"}
    fetch.serve(lti.jwks(broken))

    refused(key_set, lti.platform_key.kid, lti.now, "key-unsuitable")


def test_published_private_key_is_refused(key_set, lti, fetch):
    private_jwk = jwt.algorithms.RSAAlgorithm.to_jwk(lti.platform_key.private, as_dict=True)
    fetch.serve(lti.jwks({**private_jwk, "kid": lti.platform_key.kid}))

    refused(key_set, lti.platform_key.kid, lti.now, "key-unsuitable")


def test_key_without_use_and_alg_is_accepted_as_rs256(key_set, lti, fetch):
    bare = {k: v for k, v in lti.platform_key.public_jwk.items() if k not in ("use", "alg")}
    fetch.serve(lti.jwks(bare))

    assert key_set.key_for(lti.platform_key.kid, now=lti.now).algorithm_name == "RS256"


def test_other_unusable_keys_in_the_set_do_not_matter(key_set, lti, fetch):
    fetch.serve(lti.jwks({"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"}, lti.platform_key))

    assert key_set.key_for(lti.platform_key.kid, now=lti.now)


# --- the requests-based fetch ----------------------------------------------------------


class FakeAdapter(requests.adapters.HTTPAdapter):
    """Answers every request with a canned response; no network."""

    def __init__(self, status=200, body=b"{}", headers=None, error=None):
        super().__init__()
        self.status, self.body, self.headers, self.error = status, body, headers or {}, error
        self.sent = []

    def send(self, request, **kwargs):
        self.sent.append((request, kwargs))
        if self.error is not None:
            raise self.error
        raw = urllib3.HTTPResponse(
            body=io.BytesIO(self.body),
            status=self.status,
            headers={"Content-Type": "application/json", **self.headers},
            preload_content=False,
        )
        return self.build_response(request, raw)


def session_with(adapter: FakeAdapter) -> requests.Session:
    session = requests.Session()
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def test_requests_fetch_returns_the_body(lti):
    adapter = FakeAdapter(body=lti.jwks(lti.platform_key).encode())

    text = requests_fetch(session_with(adapter), timeout=3.0)(lti.jwks_url)

    assert json.loads(text)["keys"][0]["kid"] == lti.platform_key.kid
    request, kwargs = adapter.sent[0]
    assert kwargs["timeout"] == 3.0
    assert "application/json" in request.headers["Accept"]


def test_requests_fetch_refuses_plain_http_unless_allowed(lti):
    adapter = FakeAdapter()
    with pytest.raises(FetchError, match="https"):
        requests_fetch(session_with(adapter))("http://lms.example.edu/jwks")
    assert adapter.sent == []

    assert requests_fetch(session_with(adapter), allow_http=True)("http://localhost/jwks") == "{}"


def test_requests_fetch_does_not_follow_redirects(lti):
    adapter = FakeAdapter(status=302, headers={"Location": "https://elsewhere.example/jwks"})

    with pytest.raises(FetchError, match=r"elsewhere\.example"):
        requests_fetch(session_with(adapter))(lti.jwks_url)
    assert len(adapter.sent) == 1


def test_requests_fetch_reports_http_errors(lti):
    with pytest.raises(FetchError, match="404"):
        requests_fetch(session_with(FakeAdapter(status=404)))(lti.jwks_url)


def test_requests_fetch_reports_connection_errors(lti):
    adapter = FakeAdapter(error=requests.ConnectionError("connection refused"))

    with pytest.raises(FetchError, match="connection refused"):
        requests_fetch(session_with(adapter))(lti.jwks_url)


def test_requests_fetch_refuses_oversized_bodies(lti):
    adapter = FakeAdapter(body=b"x" * 2048)

    with pytest.raises(FetchError, match="larger than 1024"):
        requests_fetch(session_with(adapter), max_bytes=1024)(lti.jwks_url)
