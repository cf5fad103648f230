"""What every benchmark shares: statistics and the table, a throwaway PostgreSQL database,
a fake LMS platform (RSA key, id_tokens, JWKS over https on loopback), the servers under
test (all on the Gunicorn settings `rebound serve` uses), and a small keep-alive HTTP client.

Everything here talks to 127.0.0.1 only, and every load loop is bounded in time.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import math
import os
import re
import secrets
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
REBOUND = str(Path(PYTHON).with_name("rebound"))
LOOPBACK = "127.0.0.1"
ADMIN_POSTGRES_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://127.0.0.1:5432/test")
ISSUER = "https://platform.bench.invalid"
CLIENT_ID = "bench-client"
DEPLOYMENT_ID = "bench-deployment"
LEARNER = "http://purl.imsglobal.org/vocab/lis/v2/membership#Learner"
# The Gunicorn settings `rebound serve` uses by default, for every server in a comparison.
WORKERS = int(os.environ.get("BENCH_WORKERS", "2"))
THREADS = int(os.environ.get("BENCH_THREADS", "4"))


# ---------------------------------------------------------------- statistics and tables


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation between closest ranks."""
    if not values:
        raise ValueError("no values")
    if not 0 <= q <= 100:
        raise ValueError("q must be between 0 and 100")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Summary:
    """Throughput and latency of one target (latencies in seconds)."""

    name: str
    count: int
    seconds: float
    p50: float
    p95: float
    p99: float
    errors: int = 0

    @property
    def per_second(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else 0.0


def summarize(name: str, latencies: Sequence[float], seconds: float, errors: int = 0) -> Summary:
    """Count, rate and p50/p95/p99 of a list of latencies measured over `seconds`."""
    if not latencies:
        return Summary(name, 0, seconds, math.nan, math.nan, math.nan, errors)
    return Summary(
        name, len(latencies), seconds,
        percentile(latencies, 50), percentile(latencies, 95), percentile(latencies, 99), errors,
    )


def ratio(a: float, b: float) -> float:
    """a / b, or NaN when b is zero."""
    return a / b if b else math.nan


def format_table(unit: str, rows: Sequence[Summary], references: Sequence[str]) -> str:
    """A plain-text table: rate, p50/p95/p99 in ms, errors, and each row's ratio to each reference."""
    by_name = {row.name: row for row in rows}
    headers = ["target", f"{unit}/s", "p50 ms", "p95 ms", "p99 ms", "errors"]
    headers += [f"× {ref}" for ref in references]
    lines = [headers]
    for row in rows:
        cells = [
            row.name, f"{row.per_second:.1f}", f"{row.p50 * 1000:.1f}", f"{row.p95 * 1000:.1f}",
            f"{row.p99 * 1000:.1f}", str(row.errors),
        ]
        for ref in references:
            reference = by_name.get(ref)
            cells.append(f"{ratio(row.per_second, reference.per_second):.2f}" if reference else "-")
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]

    def render(cells: list[str]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in pairs)

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([render(lines[0]), rule, *(render(line) for line in lines[1:])])


def machine_note() -> str:
    """What the numbers were measured on (they are only comparable within one run)."""
    load = os.getloadavg()
    return (
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, "
        f"load average before the run {load[0]:.2f}; Gunicorn {WORKERS} workers × {THREADS} threads (gthread)"
    )


# ---------------------------------------------------------------- PostgreSQL


@contextmanager
def throwaway_database(prefix: str) -> Iterator[str]:
    """A new, empty PostgreSQL database, dropped (with any open connections) afterwards."""
    import psycopg

    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = urlsplit(ADMIN_POSTGRES_URL)
    with psycopg.connect(ADMIN_POSTGRES_URL, autocommit=True, connect_timeout=5) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin._replace(path=f"/{name}").geturl()
    finally:
        with psycopg.connect(ADMIN_POSTGRES_URL, autocommit=True, connect_timeout=5) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# ---------------------------------------------------------------- the fake platform


@dataclass
class FakePlatform:
    """An LMS that signs id_tokens with its own RSA key and serves its JWKS over https."""

    key: Any
    kid: str
    jwks: dict[str, Any]
    cert_file: str
    jwks_url: str = ""
    server: ThreadingHTTPServer | None = None

    @property
    def auth_login_url(self) -> str:
        return self.jwks_url.replace("/jwks", "/auth")

    def sign(self, claims: dict[str, Any]) -> str:
        import jwt

        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid})

    def claims(self, *, nonce: str, sub: str, target_link_uri: str, resource_link: str = "bench-link",
               context: str = "bench-course") -> dict[str, Any]:
        """A resource link launch of a learner, as an LMS sends it."""
        now = int(time.time())
        return {
            "iss": ISSUER, "aud": CLIENT_ID, "sub": sub, "iat": now, "exp": now + 300, "nonce": nonce,
            "name": f"Learner {sub}", "given_name": "Learner", "family_name": sub, "email": f"{sub}@example.com",
            "https://purl.imsglobal.org/spec/lti/claim/version": "1.3.0",
            "https://purl.imsglobal.org/spec/lti/claim/message_type": "LtiResourceLinkRequest",
            "https://purl.imsglobal.org/spec/lti/claim/deployment_id": DEPLOYMENT_ID,
            "https://purl.imsglobal.org/spec/lti/claim/target_link_uri": target_link_uri,
            "https://purl.imsglobal.org/spec/lti/claim/resource_link": {"id": resource_link, "title": "Rebound"},
            "https://purl.imsglobal.org/spec/lti/claim/roles": [LEARNER],
            "https://purl.imsglobal.org/spec/lti/claim/context": {"id": context, "title": "Social media at Acme"},
        }

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def _self_signed(directory: Path) -> tuple[str, str]:
    """A certificate for 127.0.0.1 and its key, so the JWKS can be served over https."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench platform")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(LOOPBACK))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "platform.crt", directory / "platform.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ))
    return str(cert_file), str(key_file)


def fake_platform(directory: Path) -> FakePlatform:
    """Start the fake platform's JWKS server on a free loopback port."""
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    kid = "bench-" + secrets.token_hex(4)
    document = {"keys": [{**jwk, "kid": kid, "alg": "RS256", "use": "sig"}]}
    body = json.dumps(document).encode()
    cert_file, key_file = _self_signed(directory)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/jwks":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the JWKS is fetched once per server."""

    server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    platform = FakePlatform(key=key, kid=kid, jwks=document, cert_file=cert_file, server=server)
    platform.jwks_url = f"https://{LOOPBACK}:{server.server_address[1]}/jwks"
    return platform


# ---------------------------------------------------------------- servers under test


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A server process under test, on loopback."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def wait_until_up(server: Server, path: str = "/healthz", timeout: float = 60) -> None:
    """Poll until the server answers; fail with the end of its log if it died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited:\n{server.log.read_text()[-3000:]}")
        try:
            connection = http.client.HTTPConnection(LOOPBACK, server.port, timeout=2)
            connection.request("GET", path)
            if connection.getresponse().status < 500:
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{server.name} did not answer within {timeout} s:\n{server.log.read_text()[-3000:]}")


def start_process(name: str, argv: list[str], env: dict[str, str], port: int, log_dir: Path) -> Server:
    log = log_dir / f"{name}.log"
    handle = log.open("wb")
    process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT)  # noqa: S603
    return Server(name, port, process, log)


def rebound_env(database_url: str, port: int, platform: FakePlatform, data_dir: Path) -> dict[str, str]:
    """Production settings for a loopback Rebound behind an imaginary TLS proxy."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REBOUND_")}
    env.update(
        REBOUND_ENV="production",
        REBOUND_DATABASE_URL=database_url,
        REBOUND_SECRET_KEY=secrets.token_urlsafe(48),
        REBOUND_BASE_URL=f"https://{LOOPBACK}:{port}",
        REBOUND_DATA_DIR=str(data_dir),
        REBOUND_LOG_LEVEL="INFO",
        # As in production behind a TLS-terminating proxy (the client sends X-Forwarded-Proto).
        REBOUND_TRUSTED_PROXY_HOPS="1",
        # Rebound fetches the platform's JWKS over https; trust the fake platform's certificate.
        REQUESTS_CA_BUNDLE=platform.cert_file,
    )
    return env


def run_rebound_cli(env: dict[str, str], *args: str) -> str:
    result = subprocess.run([REBOUND, *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        raise RuntimeError(f"rebound {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def start_rebound(database_url: str, platform: FakePlatform, work: Path, *, workers: int = WORKERS,
                  threads: int = THREADS) -> Server:
    """Migrate a database, register the fake platform, and run `rebound serve` in production mode."""
    port = free_port()
    env = rebound_env(database_url, port, platform, work / "rebound-data")
    run_rebound_cli(env, "db", "upgrade")
    run_rebound_cli(
        env, "platforms", "add", "--name", "Bench LMS", "--issuer", ISSUER, "--client-id", CLIENT_ID,
        "--auth-login-url", platform.auth_login_url, "--auth-token-url", platform.jwks_url.replace("/jwks", "/token"),
        "--jwks-url", platform.jwks_url, "--deployment-id", DEPLOYMENT_ID,
    )
    server = start_process(
        "rebound", [REBOUND, "serve", "--host", LOOPBACK, "--port", str(port), "--workers", str(workers),
                    "--threads", str(threads)], env, port, work,
    )
    wait_until_up(server)
    return server


def start_wsgi(
    name: str, app_spec: str, work: Path, extra_env: dict[str, str] | None = None, port: int | None = None
) -> Server:
    """Run `module:factory` under Gunicorn with exactly the options `rebound serve` uses."""
    port = port or free_port()
    env = {**os.environ, **(extra_env or {})}
    server = start_process(
        name, [PYTHON, "-m", "bench.serve", app_spec, "--port", str(port), "--workers", str(WORKERS),
               "--threads", str(THREADS)], env, port, work,
    )
    wait_until_up(server)
    return server


@contextmanager
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="rebound-bench-") as name:
        yield Path(name)


# ---------------------------------------------------------------- the HTTP client


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def location(self) -> str:
        return self.headers.get("Location", "")

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


@dataclass
class Browser:
    """One browser: a keep-alive connection to one server and its cookies.

    Cookies are kept by name whatever their Secure flag: the servers sit behind an
    imagined TLS proxy, so the plain-http loopback hop stands for https.
    """

    port: int
    cookies: dict[str, str] = field(default_factory=dict)
    connection: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, form: dict[str, str] | None = None) -> Response:
        headers = {"Host": f"{LOOPBACK}:{self.port}", "X-Forwarded-Proto": "https"}
        body = None
        if form is not None:
            body = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        for attempt in (1, 2):
            if self.connection is None:
                self.connection = http.client.HTTPConnection(LOOPBACK, self.port, timeout=30)
            try:
                self.connection.request(method, path, body=body, headers=headers)
                raw = self.connection.getresponse()
                data = raw.read()
                break
            except (http.client.HTTPException, OSError):
                # The server closed an idle keep-alive connection: reconnect once.
                self.connection.close()
                self.connection = None
                if attempt == 2:
                    raise
        self._remember(raw.msg.get_all("Set-Cookie") or [])
        if raw.getheader("Connection", "").lower() == "close":
            self.connection.close()
            self.connection = None
        return Response(raw.status, raw.msg, data)

    def _remember(self, set_cookies: list[str]) -> None:
        for header in set_cookies:
            cookie: SimpleCookie = SimpleCookie()
            # SimpleCookie does not know the Partitioned attribute; it changes nothing here.
            cookie.load(re.sub(r";\s*Partitioned", "", header, flags=re.IGNORECASE))
            for name, morsel in cookie.items():
                expired = morsel["max-age"] == "0" or (morsel["expires"] and "1970" in morsel["expires"])
                if expired or morsel.value == "":
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


_CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


def csrf_token(html: str) -> str:
    """The CSRF token of the first form on a page."""
    match = _CSRF.search(html)
    if match is None:
        raise RuntimeError("no CSRF token on the page")
    return match.group(1)


def expect(response: Response, status: int, what: str) -> Response:
    if response.status != status:
        raise RuntimeError(f"{what}: expected {status}, got {response.status}: {response.text()[:300]}")
    return response


# ---------------------------------------------------------------- closed-loop load


@dataclass
class Measured:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str = ""


def closed_loop(
    operation: Callable[[Any], float | None], make_state: Callable[[int], Any], *, concurrency: int, seconds: float,
) -> Measured:
    """Run `operation(state)` back to back in `concurrency` threads for `seconds`; time each one.

    An operation that returns a number has timed the part that counts itself (the rest of
    it is set-up, such as starting a new attempt); one that returns None is timed whole.
    """
    measured = Measured()
    lock = threading.Lock()
    states = [make_state(i) for i in range(concurrency)]
    for state in states:
        prepare = getattr(state, "prepare", None)
        if prepare:
            prepare()
    deadline = time.perf_counter() + seconds

    def worker(state: Any) -> None:
        local: list[float] = []
        errors, first = 0, ""
        while True:
            started = time.perf_counter()
            if started >= deadline:
                break
            try:
                timed = operation(state)
            except Exception as error:  # a failed operation is counted and reported, not fatal
                errors += 1
                first = first or f"{type(error).__name__}: {error}"
                continue
            local.append(time.perf_counter() - started if timed is None else timed)
        with lock:
            measured.latencies.extend(local)
            measured.errors += errors
            measured.first_error = measured.first_error or first

    threads = [threading.Thread(target=worker, args=(state,)) for state in states]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for state in states:
        close = getattr(state, "close", None)
        if close:
            close()
    return measured


def interleaved(
    targets: dict[str, Callable[[float], Measured]], *, rounds: int, seconds: float, warmup: float,
) -> list[Summary]:
    """Run each target for `seconds`, round after round in rotating order, and summarise each.

    Rotating the order spreads the machine's noise (other people's tests) over all targets.
    """
    names = list(targets)
    for name in names:
        targets[name](warmup)
    collected: dict[str, Measured] = {name: Measured() for name in names}
    for round_number in range(rounds):
        order = names[round_number % len(names):] + names[:round_number % len(names)]
        for name in order:
            result = targets[name](seconds)
            collected[name].latencies.extend(result.latencies)
            collected[name].errors += result.errors
            collected[name].first_error = collected[name].first_error or result.first_error
    summaries = []
    for name in names:
        result = collected[name]
        if result.first_error:
            print(f"  {name}: {result.errors} failed, first: {result.first_error}", file=sys.stderr)
        summaries.append(summarize(name, result.latencies, seconds * rounds, result.errors))
    return summaries
