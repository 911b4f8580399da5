#!/usr/bin/env python3
"""The benchmark behind `make bench`: Envoy with and without Rulegate, side
by side on loopback, measured with wrk, printed as one table against the
targets of the design.

Every Envoy here runs one worker thread, as the design's reference figures
do, and is started from the shipped envoy.yaml with only ports, the filter
scope and the filter module changed, so the figures describe what ships.

What it measures:
  - requests on a route other than the token endpoint (a direct response
    from Envoy): Envoy alone, Rulegate scoped to its routes (as shipped),
    Rulegate on every route, and a do-nothing wasm filter on every route;
  - token-endpoint throughput (refresh-token exchanges of the confidential
    client, whose refresh token can be reused) with and without Rulegate;
  - the filter's own processing time per exchange, from its histogram;
  - Envoy's jwt_authn filter verifying the same RS256 id_token, as the
    native reference for the cost of a verification;
  - the .wasm size, and Envoy's memory with the filter after N exchanges.

Load stays on 127.0.0.1; every loop is bounded by count and time.
"""

import base64
import hashlib
import http.cookiejar
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
WRK_SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
EXCHANGES = int(os.environ.get("BENCH_EXCHANGES", "20000"))
USERS = int(os.environ.get("BENCH_USERS", "100000"))
ENVOY = os.path.join(ROOT, ".venv/bin/envoy")
WASM = os.path.join(ROOT, "target/rulegate.wasm")
NOOP_WASM = os.path.join(ROOT, "bench/noop/target/wasm32-wasip1/release/noop_filter.wasm")
VERIFY_WASM = os.path.join(ROOT, "bench/verify/target/wasm32-wasip1/release/verify_bench_filter.wasm")
VERIFY_RUNS = 5

STATIC_ROUTE = """                        - match: { path: /bench/static }
                          direct_response: { status: 200, body: { inline_string: "ok" } }
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def service_environment():
    """The demo's credentials, as scripts/demo.sh sets them."""
    env = {}
    for line in open(os.path.join(ROOT, "scripts/demo.sh")):
        match = re.match(r"export (\w+)=(\S+)", line.strip())
        if match:
            env[match.group(1)] = match.group(2)
    return env


class Stack:
    """The provider, the stand-ins and one Envoy variant."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.procs = []
        self.envoy_port = free_port()
        self.provider_port = free_port()
        self.services_port = free_port()
        self.base = f"http://127.0.0.1:{self.envoy_port}"
        self.key = os.path.join(tmp, "signing-key.pem")
        subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-out", self.key], check=True,
                       stderr=subprocess.DEVNULL)
        self.start_provider()
        self.start_standins()

    def spawn(self, args, env=None, name="proc"):
        log = open(os.path.join(self.tmp, f"{name}.log"), "w")
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def start_provider(self):
        # RS256 id_tokens, as most providers sign them: the design's token
        # path verifies RS256.
        env = dict(os.environ, ISSUER=self.base, PORT=str(self.provider_port),
                   BACKEND_ID_TOKEN_ALG="RS256")
        self.spawn(["node", "provider/server.mjs"], env, "provider")
        wait_http(f"http://127.0.0.1:{self.provider_port}/.well-known/openid-configuration")

    def start_standins(self):
        self.spawn([os.path.join(ROOT, "target/debug/standins"), "--port", str(self.services_port)],
                   name="standins")
        wait_port(self.services_port)

    def envoy(self, variant, key=None):
        """Starts Envoy as `variant`, signing with the PEM file `key` (the
        stack's P-256 key by default); returns (process, admin URL)."""
        admin_port = free_port()
        yaml = open(os.path.join(ROOT, "envoy.yaml")).read()
        yaml = (yaml.replace("port_value: 10000", f"port_value: {self.envoy_port}")
                .replace("port_value: 3000", f"port_value: {self.provider_port}")
                .replace("port_value: 4000", f"port_value: {self.services_port}")
                .replace("port_value: 9901", f"port_value: {admin_port}")
                .replace("http://127.0.0.1:10000", self.base)
                .replace("filename: target/rulegate.wasm", f"filename: {WASM}"))
        yaml = yaml.replace("                      routes:\n",
                            "                      routes:\n" + STATIC_ROUTE, 1)
        yaml = variant(yaml)
        path = os.path.join(self.tmp, "envoy.yaml")
        with open(path, "w") as f:
            f.write(yaml)
        env = dict(os.environ, RULEGATE_SIGNING_KEY=open(key or self.key).read(),
                   **service_environment())
        proc = self.spawn([ENVOY, "-c", path, "--concurrency", "1", "--disable-hot-restart",
                           "--log-level", "warn"], env, "envoy")
        admin = f"http://127.0.0.1:{admin_port}"
        wait_http(admin + "/ready")
        return proc, admin

    def stop(self):
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def wait_port(port, seconds=30):
    deadline = time.time() + seconds
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"nothing listens on port {port} after {seconds} s")


def wait_http(url, seconds=30):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} did not answer 200 within {seconds} s")


# Envoy variants, as edits of the shipped envoy.yaml.
def alone(yaml):
    start = yaml.index("                  - name: rulegate\n")
    end = yaml.index("                  - name: envoy.filters.http.router")
    return yaml[:start] + yaml[end:]


def scoped(yaml):
    return yaml


def every_route(yaml):
    return yaml.replace("                    disabled: true\n", "", 1)


def noop_every_route(yaml):
    yaml = every_route(yaml).replace(f"filename: {WASM}", f"filename: {NOOP_WASM}")
    return yaml.replace("vm_id: rulegate", "vm_id: noop")


def with_jwt_authn(jwks):
    def variant(yaml):
        yaml = alone(yaml)
        filter_yaml = f"""                  - name: envoy.filters.http.jwt_authn
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
                      providers:
                        demo:
                          issuer: "{ISSUER_PLACEHOLDER}"
                          local_jwks: {{ inline_string: '{jwks}' }}
                          forward: true
                      rules:
                        - match: {{ path: /bench/static }}
                          requires: {{ provider_name: demo }}
"""
        index = yaml.index("                  - name: envoy.filters.http.router")
        return yaml[:index] + filter_yaml + yaml[index:]
    return variant


ISSUER_PLACEHOLDER = "__ISSUER__"


def design_path(algorithm):
    """The design's token path: five claim rules (a CEL condition and a CEL
    value each) on the id_token only, nothing else, signing with
    `algorithm`. A refresh exchange then verifies one RS256 token, runs the
    five rules and signs one token."""
    rules = ",\n".join(" " * 32 + json.dumps({
        "name": f"claim{i}", "type": "rule", "when": "user.email_verified",
        "id_token": {f"c{i}": "user.email.endsWith('@example.com') ? 'staff' : 'customer'"},
    }) for i in range(5))

    def variant(yaml):
        # The rules sit in a YAML block scalar: keep its indentation.
        yaml = re.sub(r'"rules": \[.*?\n {30}\]\n', f'"rules": [\n{rules}\n{" " * 30}]\n', yaml,
                      count=1, flags=re.DOTALL)
        return yaml.replace('"algorithm": "ES256"', f'"algorithm": "{algorithm}"', 1)
    return variant


def minting_provider(services_port):
    """The token route sent to the stand-ins' minting provider (a new user
    on every exchange), with the rules that keep user records but call no
    service, so that only the filter and its store are measured."""
    def variant(yaml):
        token_route = ('- match: { safe_regex: { regex: "(?i)/token/?" } }\n'
                       '                          route: { cluster: oidc_provider, idle_timeout: 15s }')
        minted = ('- match: { safe_regex: { regex: "(?i)/token/?" } }\n'
                  '                          route: { cluster: fake_idp, regex_rewrite: '
                  '{ pattern: { regex: ".*" }, substitution: /fake-idp/mint/token } }')
        cluster = (f"    - name: fake_idp\n      type: STATIC\n      connect_timeout: 1s\n"
                   f"      load_assignment:\n        cluster_name: fake_idp\n"
                   f"        endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: "
                   f"{{address: 127.0.0.1, port_value: {services_port}}}}}}}}}]}}]\n"
                   f"    - name: oidc_provider\n")
        yaml = yaml.replace(token_route, minted, 1).replace("    - name: oidc_provider\n", cluster, 1)
        start = yaml.index("value: |\n") + len("value: |\n")
        indent = len(yaml[start:]) - len(yaml[start:].lstrip(" "))
        lines = []
        for line in yaml[start:].splitlines(keepends=True):
            if line.strip() and len(line) - len(line.lstrip(" ")) < indent:
                break
            lines.append(line)
        block = "".join(lines)
        config = json.loads(block)
        config["provider"] = {"cluster": "fake_idp", "jwks_path": "/fake-idp/mint/jwks"}
        config["access_tokens"] = "opaque"
        config["rules"] = [r for r in config["rules"] if r["type"] in ("set_claim", "rule")
                           and "webhook" not in r]
        new_block = "".join(" " * indent + l + "\n" for l in json.dumps(config, indent=2).splitlines())
        return yaml[:start] + new_block + yaml[start + len(block):]
    return variant


def mint_script(tmp):
    path = os.path.join(tmp, "mint.lua")
    with open(path, "w") as f:
        f.write('wrk.method = "POST"\nwrk.body = "grant_type=authorization_code&code=c&client_id=rulegate-spa"\n'
                'wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\n')
    return path


def wrk(url, seconds, script=None, connections=16):
    args = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script:
        args += ["-s", script]
    out = subprocess.run(args + [url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, int(non2xx.group(1)) if non2xx else 0


def login_backend(base):
    """A real authorization-code login of the confidential client through
    Envoy; returns its refresh token and its (RS256) access token."""
    jar = http.cookiejar.CookieJar()

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect)

    def request(url, data=None, headers=None):
        req = urllib.request.Request(url, data=data, headers=headers or {})
        try:
            with opener.open(req) as r:
                return r.status, r.headers, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read().decode()

    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    query = urllib.parse.urlencode({
        "response_type": "code", "client_id": "rulegate-backend", "redirect_uri": f"{base}/callback",
        "scope": "openid email profile", "state": "s", "nonce": "n",
        "code_challenge": challenge, "code_challenge_method": "S256"})
    url = f"{base}/auth?{query}"
    for _ in range(12):
        if url.startswith(f"{base}/callback"):
            break
        status, headers, body = request(url)
        if 300 <= status < 400:
            url = urllib.parse.urljoin(base, headers.get("Location"))
            continue
        action = re.search(r'action="([^"]+)"', body).group(1)
        fields = {"email": f"bench.{secrets.token_hex(4)}@example.com", "password": "rulegate"} \
            if action.endswith("/login") else {}
        status, headers, body = request(urllib.parse.urljoin(base, action),
                                        urllib.parse.urlencode(fields).encode())
        url = urllib.parse.urljoin(base, headers.get("Location"))
    code = urllib.parse.parse_qs(urllib.parse.urlparse(url).query)["code"][0]
    auth = "Basic " + base64.b64encode(b"rulegate-backend:backend-secret").decode()
    form = urllib.parse.urlencode({"grant_type": "authorization_code", "code": code,
                                   "redirect_uri": f"{base}/callback", "code_verifier": verifier})
    status, _, body = request(f"{base}/token", form.encode(), {"Authorization": auth})
    tokens = json.loads(body)
    return tokens["refresh_token"], tokens["access_token"]


def refresh_script(tmp, refresh_token):
    auth = base64.b64encode(b"rulegate-backend:backend-secret").decode()
    body = urllib.parse.urlencode({"grant_type": "refresh_token", "refresh_token": refresh_token})
    path = os.path.join(tmp, "refresh.lua")
    with open(path, "w") as f:
        f.write(f'wrk.method = "POST"\nwrk.body = "{body}"\n'
                f'wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\n'
                f'wrk.headers["Authorization"] = "Basic {auth}"\n')
    return path


def bearer_script(tmp, token):
    path = os.path.join(tmp, "bearer.lua")
    with open(path, "w") as f:
        f.write(f'wrk.headers["Authorization"] = "Bearer {token}"\n')
    return path


def stat(admin, name):
    with urllib.request.urlopen(f"{admin}/stats?filter={urllib.parse.quote(name)}") as r:
        return r.read().decode()


def memory(admin):
    with urllib.request.urlopen(f"{admin}/memory") as r:
        return int(json.loads(r.read())["allocated"])


def histogram_quantiles(admin, name):
    text = stat(admin, "^" + re.escape(name) + "$")
    quantiles = {}
    for key, value in re.findall(r"P([\d.]+)\([^,]+,([\d.nan]+)\)", text):
        try:
            quantiles[key] = float(value)
        except ValueError:
            pass
    return quantiles


VERIFY_YAML = """static_resources:
  listeners:
    - address: { socket_address: { address: 127.0.0.1, port_value: PORT } }
      filter_chains:
        - filters:
            - name: envoy.filters.network.http_connection_manager
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                stat_prefix: bench
                route_config:
                  virtual_hosts:
                    - name: all
                      domains: ["*"]
                      routes:
                        - match: { prefix: / }
                          direct_response: { status: 404 }
                http_filters:
                  - name: verify-bench
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
                      config:
                        configuration:
                          "@type": type.googleapis.com/google.protobuf.StringValue
                          value: CONFIGURATION
                        vm_config:
                          vm_id: verify-bench
                          runtime: envoy.wasm.runtime.v8
                          code: { local: { filename: WASM } }
                  - name: envoy.filters.http.router
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
admin:
  address: { socket_address: { address: 127.0.0.1, port_value: ADMIN } }
"""


def verification_cases():
    """Keys and tokens signed by Python's `cryptography`, for the
    verification benchmark filter (bench/verify)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    def b64(data):
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    def uint(value):
        return value.to_bytes((value.bit_length() + 7) // 8, "big")

    claims = b64(json.dumps({"iss": "https://bench.example.com", "sub": "user-1", "aud": "bench",
                             "iat": 1_800_000_000 - 10, "exp": 1_800_000_000 + 300,
                             "email": "ada@example.com", "email_verified": True}).encode())
    cases = []

    def add(name, alg, jwk, sign):
        header = b64(json.dumps({"alg": alg, "kid": "bench", "typ": "JWT"}).encode())
        message = f"{header}.{claims}".encode()
        cases.append({"name": name, "alg": alg, "jwk": dict(jwk, kid="bench"),
                      "token": f"{header}.{claims}.{b64(sign(message))}"})

    for bits in (2048, 3072, 4096):
        key = rsa.generate_private_key(65537, bits)
        numbers = key.public_key().public_numbers()
        jwk = {"kty": "RSA", "n": b64(uint(numbers.n)), "e": b64(uint(numbers.e))}
        add(f"RS256 (RSA-{bits})", "RS256", jwk,
            lambda m, key=key: key.sign(m, padding.PKCS1v15(), hashes.SHA256()))
        if bits == 2048:
            pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
            add("PS256 (RSA-2048)", "PS256", jwk,
                lambda m, key=key, pss=pss: key.sign(m, pss, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    numbers = key.public_key().public_numbers()
    jwk = {"kty": "EC", "crv": "P-256", "x": b64(numbers.x.to_bytes(32, "big")),
           "y": b64(numbers.y.to_bytes(32, "big"))}

    def es256(message):
        r, s = decode_dss_signature(key.sign(message, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    add("ES256", "ES256", jwk, es256)
    key = ed25519.Ed25519PrivateKey.generate()
    from cryptography.hazmat.primitives import serialization
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    add("EdDSA (Ed25519)", "EdDSA", {"kty": "OKP", "crv": "Ed25519", "x": b64(raw)}, key.sign)

    def pem(private):
        return private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()).decode()
    signers = [
        {"name": "sign ES256", "alg": "ES256", "pem": pem(ec.generate_private_key(ec.SECP256R1()))},
        {"name": "sign EdDSA", "alg": "EdDSA", "pem": pem(ed25519.Ed25519PrivateKey.generate())},
        {"name": "sign RS256 (RSA-2048)", "alg": "RS256", "pem": pem(rsa.generate_private_key(65537, 2048))},
    ]
    return cases, signers


def verification_costs(tmp):
    """Per-operation CPU inside Envoy (one worker, the host's clock):
    jwt-simple's verification against Rulegate's, and Rulegate's signing,
    median of VERIFY_RUNS runs. Returns rows (operation, jwt-simple us or
    None, Rulegate us)."""
    cases, signers = verification_cases()
    port, admin_port = free_port(), free_port()
    configuration = json.dumps(json.dumps({"cases": cases, "signers": signers}))
    yaml = (VERIFY_YAML.replace("ADMIN", str(admin_port)).replace("PORT", str(port))
            .replace("CONFIGURATION", configuration).replace("WASM", VERIFY_WASM))
    path = os.path.join(tmp, "verify-envoy.yaml")
    with open(path, "w") as f:
        f.write(yaml)
    log = open(os.path.join(tmp, "verify-envoy.log"), "w")
    proc = subprocess.Popen([ENVOY, "-c", path, "--concurrency", "1", "--disable-hot-restart",
                             "--log-level", "warn"],
                            stdout=log, stderr=subprocess.STDOUT)
    rows = []
    try:
        wait_http(f"http://127.0.0.1:{admin_port}/ready")

        def per_op(index, implementation, count, what="verify"):
            url = f"http://127.0.0.1:{port}/{what}/{index}/{implementation}/{count}"
            answer = json.load(urllib.request.urlopen(url, timeout=120))
            if answer.get("ok") != count:
                raise SystemExit(f"{what} #{index}: {implementation} succeeded "
                                 f"{answer.get('ok')} of {count} times: {answer}")
            return answer["per_op_us"]

        def median(index, implementation, count, what="verify"):
            # Warm up: V8 first runs code from its baseline compiler and
            # optimises hot functions later.
            per_op(index, implementation, 30, what)
            runs = sorted(per_op(index, implementation, count, what) for _ in range(VERIFY_RUNS))
            return runs[len(runs) // 2]

        for index, case in enumerate(cases):
            count = 20 if case["alg"] in ("RS256", "PS256") and "2048" not in case["name"] else 100
            rows.append((f"verify {case['name']}", median(index, "jwt-simple", count),
                         median(index, "rulegate", count)))
        for index, signer in enumerate(signers):
            count = 10 if signer["alg"] == "RS256" else 100
            rows.append((signer["name"], None, median(index, "rulegate", count, "sign")))
    finally:
        proc.terminate()
        proc.wait()
    return rows


def print_verification_costs(rows):
    print()
    print("Signatures inside Envoy (V8, one worker), CPU per operation, "
          f"median of {VERIFY_RUNS} runs; jwt-simple = its own verification, as Rulegate "
          "verified before it had its own RSA code")
    width = max(len(row[0]) for row in rows)
    print(f"{'operation'.ljust(width)}  {'jwt-simple':>10}  {'Rulegate':>9}  target")
    for name, before, after in rows:
        target = "<= 100 us" if name == "verify RS256 (RSA-2048)" else ""
        before = f"{before:>7.0f} us" if before is not None else f"{'':>10}"
        print(f"{name.ljust(width)}  {before}  {after:>6.0f} us  {target}")


def design_costs(stack, tmp, script):
    """In-filter time of the design's path (verify RS256, five rules, sign
    ES256, and again signing EdDSA) over refresh exchanges driven by the wrk
    `script`; returns the histogram quantiles by signing algorithm."""
    ed25519_key = os.path.join(tmp, "ed25519.pem")
    subprocess.run(["openssl", "genpkey", "-algorithm", "ED25519", "-out", ed25519_key],
                   check=True, stderr=subprocess.DEVNULL)
    design = {}
    for algorithm, key in (("ES256", None), ("EdDSA", ed25519_key)):
        proc, admin = stack.envoy(design_path(algorithm), key)
        wrk(f"{stack.base}/token", 2, script, connections=8)
        wrk(f"{stack.base}/token", WRK_SECONDS, script, connections=8)
        time.sleep(6)  # one stats flush for the histogram
        design[algorithm] = histogram_quantiles(
            admin, "wasmcustom.rulegate.token_exchange.processing_us")
        proc.terminate()
        proc.wait()
    return design


def design_only():
    """`bench.py design`: only the design's token path, for quick turns."""
    tmp = tempfile.mkdtemp(prefix="rulegate-bench-")
    stack = Stack(tmp)
    try:
        proc, _ = stack.envoy(alone)
        refresh_token, _ = login_backend(stack.base)
        proc.terminate()
        proc.wait()
        design = design_costs(stack, tmp, refresh_script(tmp, refresh_token))
    finally:
        stack.stop()
    for algorithm, quantiles in design.items():
        print(f"design path signing {algorithm}: median {quantiles.get('50', float('nan')):.0f} us, "
              f"p99 {quantiles.get('99', float('nan')):.0f} us")


def main():
    if sys.argv[1:] == ["verify"]:
        print_verification_costs(verification_costs(tempfile.mkdtemp(prefix="rulegate-bench-")))
        return
    if sys.argv[1:] == ["design"]:
        design_only()
        return
    for tool in (ENVOY, WASM, NOOP_WASM, VERIFY_WASM, os.path.join(ROOT, "target/debug/standins")):
        if not os.path.exists(tool):
            raise SystemExit(f"{tool} is missing: run `make bench`, which builds it")
    if not shutil.which("wrk"):
        raise SystemExit("wrk is missing: run `make bench`, which installs it")
    tmp = tempfile.mkdtemp(prefix="rulegate-bench-")
    stack = Stack(tmp)
    results = {}
    static = f"{stack.base}/bench/static"
    verification = verification_costs(tmp)
    try:
        for name, variant in [("alone", alone), ("scoped", scoped),
                              ("every_route", every_route), ("noop_every_route", noop_every_route)]:
            proc, admin = stack.envoy(variant)
            wrk(static, 2)  # warm up
            results[name] = wrk(static, WRK_SECONDS)[0]
            proc.terminate()
            proc.wait()

        # Token endpoint: Envoy alone, then with Rulegate (as shipped).
        proc, admin = stack.envoy(alone)
        refresh_token, access_token = login_backend(stack.base)
        script = refresh_script(tmp, refresh_token)
        wrk(f"{stack.base}/token", 2, script, connections=8)
        results["token_alone"], bad = wrk(f"{stack.base}/token", WRK_SECONDS, script, connections=8)
        proc.terminate()
        proc.wait()

        proc, admin = stack.envoy(scoped)
        memory_before = memory(admin)
        wrk(f"{stack.base}/token", 2, script, connections=8)
        results["token_filter"], bad_filter = wrk(f"{stack.base}/token", WRK_SECONDS, script, connections=8)
        # More exchanges for the memory figure, bounded by count and time.
        done = 0
        deadline = time.time() + 300
        while done < EXCHANGES and time.time() < deadline:
            rps, _ = wrk(f"{stack.base}/token", 5, script, connections=8)
            done += int(rps * 5)
        time.sleep(6)  # one stats flush for the histogram
        quantiles = histogram_quantiles(admin, "wasmcustom.rulegate.token_exchange.processing_us")
        memory_after = memory(admin)
        rewritten = stat(admin, "^wasmcustom.rulegate.token_response.rewritten$").strip()
        proc.terminate()
        proc.wait()

        design = design_costs(stack, tmp, script)

        # Memory after many logins of distinct users: each adds a record.
        proc, admin = stack.envoy(minting_provider(stack.services_port))
        script = mint_script(tmp)
        wrk(f"{stack.base}/token", 1, script, connections=8)
        users_before = memory(admin)
        logins = 0
        deadline = time.time() + 300
        while logins < USERS and time.time() < deadline:
            rps, _ = wrk(f"{stack.base}/token", 5, script, connections=8)
            logins += int(rps * 5)
        users_after = memory(admin)
        first = stat(admin, "^wasmcustom.rulegate.logins.first$").strip()
        proc.terminate()
        proc.wait()

        # Envoy's own jwt_authn on an RS256 token of the same provider.
        jwks = urllib.request.urlopen(f"http://127.0.0.1:{stack.provider_port}/jwks").read().decode()
        variant = with_jwt_authn(jwks.replace("'", ""))
        proc, admin = stack.envoy(lambda y: variant(y).replace(ISSUER_PLACEHOLDER, stack.base))
        bearer = bearer_script(tmp, access_token)
        wrk(static, 2, bearer)
        results["jwt_authn"], jwt_bad = wrk(static, WRK_SECONDS, bearer)
        proc.terminate()
        proc.wait()
    finally:
        stack.stop()

    alone_rps = results["alone"]
    per_verification_us = (1 / results["jwt_authn"] - 1 / alone_rps) * 1e6
    size = os.path.getsize(WASM)
    rows = [
        ("other route, filter scoped (ratio to Envoy alone)", f"{results['scoped'] / alone_rps:.3f}",
         "within noise of 1.0"),
        ("other route, filter on every route (ratio to no-op wasm)",
         f"{results['every_route'] / results['noop_every_route']:.3f}", ">= 0.95"),
        ("  (no-op wasm filter on every route, ratio to Envoy alone)",
         f"{results['noop_every_route'] / alone_rps:.3f}", "reference"),
        ("token endpoint throughput (ratio to Envoy alone)",
         f"{results['token_filter'] / results['token_alone']:.3f}", ">= 0.25"),
        ("in-filter time, design path (verify RS256, 5 rules, sign ES256), median (us)",
         f"{design['ES256'].get('50', float('nan')):.0f}", "<= 300"),
        ("in-filter time, design path, p99 (us)", f"{design['ES256'].get('99', float('nan')):.0f}",
         "<= 1000"),
        ("in-filter time, design path signing EdDSA, median (us)",
         f"{design['EdDSA'].get('50', float('nan')):.0f}", "<= 150"),
        ("in-filter time, shipped demo config (2 tokens verified + re-signed), median (us)",
         f"{quantiles.get('50', float('nan')):.0f}", "reference"),
        ("in-filter time, shipped demo config, p99 (us)", f"{quantiles.get('99', float('nan')):.0f}",
         "reference"),
        ("jwt_authn RS256 verification, CPU per request (us)", f"{per_verification_us:.0f}", "reference"),
        (".wasm size (bytes)", f"{size}", "<= 1572864"),
        (f"Envoy memory growth with the filter after ~{done + int(results['token_filter'] * WRK_SECONDS)}"
         " exchanges of one user (MB)", f"{(memory_after - memory_before) / 1e6:.1f}", "<= 35, flat"),
        (f"Envoy memory growth after ~{logins} logins of distinct users (MB)",
         f"{(users_after - users_before) / 1e6:.1f}", "<= 35"),
    ]
    print()
    print(f"Rulegate benchmark: one Envoy worker, loopback, wrk -t1, {WRK_SECONDS} s per figure")
    print(f"  throughput (req/s): Envoy alone {alone_rps:.0f}, scoped {results['scoped']:.0f}, "
          f"every route {results['every_route']:.0f}, no-op wasm {results['noop_every_route']:.0f}, "
          f"jwt_authn {results['jwt_authn']:.0f}")
    print(f"  token endpoint (req/s): alone {results['token_alone']:.0f}, "
          f"with Rulegate {results['token_filter']:.0f}; non-2xx {bad} / {bad_filter}; {rewritten}")
    print(f"  distinct users: {first}")
    width = max(len(r[0]) for r in rows)
    print()
    print(f"{'measure'.ljust(width)}  {'figure':>10}  target")
    for name, value, target in rows:
        print(f"{name.ljust(width)}  {value:>10}  {target}")
    print_verification_costs(verification)


if __name__ == "__main__":
    sys.exit(main())
