"""A labelled corpus for redaction: realistic prose, chat turns and code with planted
values of every supported type (valid checksums, several formats per type, next to
punctuation, inside JSON and URLs), and a clean corpus of look-alikes that must be left
alone (hex addresses, dates, versions, order numbers, timestamps, hashes, code).

Deterministic for a seed; shared by the tests and ``bench/redaction.py``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import string
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import phonenumbers


@dataclass(frozen=True)
class Planted:
    entity: str
    value: str
    """The value as it stands in the text (escaped inside JSON)."""
    text: str
    shape: str  # prose, chat, code, json, url, punctuation


# --- values ----------------------------------------------------------------------------

_FIRST = ["anna", "li", "omar", "sofia", "jean-luc", "priya", "kenji", "maria", "tom", "ada"]
_LAST = ["smith", "nguyen", "okafor", "garcia", "dubois", "patel", "tanaka", "rossi", "o.neil"]
_DOMAINS = ["example.com", "mail.example.org", "corp.example.co.uk", "uni-example.de", "ex.io"]


def _email(rng: random.Random) -> str:
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    user = rng.choice([f"{first}.{last}", f"{first}{rng.randint(1, 99)}", f"{first}+news",
                       f"{first[0]}_{last}"])  # fmt: skip
    address = f"{user}@{rng.choice(_DOMAINS)}"
    return address.upper() if rng.random() < 0.1 else address


_PHONE_SHAPES: list[tuple[str, Callable[[random.Random], str]]] = [
    (
        "US",
        lambda r: (
            f"({r.choice(['212', '415', '646', '312', '617'])}) "
            f"{r.randint(200, 989)}-{r.randint(1000, 9999)}"
        ),
    ),
    (
        "US",
        lambda r: (
            f"{r.choice(['212', '303', '512', '206'])}-{r.randint(200, 989)}-"
            f"{r.randint(1000, 9999)}"
        ),
    ),
    (
        "US",
        lambda r: (
            f"+1 {r.choice(['415', '718', '404'])} {r.randint(200, 989)} {r.randint(1000, 9999)}"
        ),
    ),
    ("US", lambda r: f"{r.choice(['650', '408'])}.{r.randint(200, 989)}.{r.randint(1000, 9999)}"),
    ("GB", lambda r: f"+44 20 7{r.randint(100, 999)} {r.randint(1000, 9999)}"),
    ("GB", lambda r: f"07{r.randint(700, 999)} {r.randint(100000, 999999)}"),
    ("DE", lambda r: f"+49 30 {r.randint(1000000, 9999999)}"),
    ("DE", lambda r: f"+49 151 {r.randint(10000000, 99999999)}"),
    (
        "FR",
        lambda r: (
            f"+33 1 {r.randint(10, 99)} {r.randint(10, 99)} {r.randint(10, 99)} {r.randint(10, 99)}"
        ),
    ),
    ("IN", lambda r: f"+91 98{r.randint(100, 999)} {r.randint(10000, 99999)}"),
]


def _phone(rng: random.Random) -> str:
    while True:
        region, shape = rng.choice(_PHONE_SHAPES)
        value = shape(rng)
        if phonenumbers.is_valid_number(phonenumbers.parse(value, region)):
            return value


def _luhn_complete(prefix: str, length: int, rng: random.Random) -> str:
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    total = 0
    for index, char in enumerate(reversed(body)):
        digit = int(char)
        if index % 2 == 0:
            digit *= 2
            digit = digit - 9 if digit > 9 else digit
        total += digit
    return body + str((10 - total % 10) % 10)


def _card(rng: random.Random) -> str:
    kind = rng.choice(["visa", "mastercard", "amex"])
    if kind == "amex":
        number = _luhn_complete(rng.choice(["34", "37"]), 15, rng)
        groups = [number[:4], number[4:10], number[10:]]
    else:
        prefix = "4" if kind == "visa" else str(rng.randint(51, 55))
        number = _luhn_complete(prefix, 16, rng)
        groups = [number[i : i + 4] for i in range(0, 16, 4)]
    return rng.choice([number, " ".join(groups), "-".join(groups)])


_IBAN_BBAN = {
    "DE": lambda r: "".join(r.choice(string.digits) for _ in range(18)),
    "GB": lambda r: "NWBK" + "".join(r.choice(string.digits) for _ in range(14)),
    "FR": lambda r: "".join(r.choice(string.digits) for _ in range(23)),
    "NL": lambda r: "ABNA" + "".join(r.choice(string.digits) for _ in range(10)),
    "ES": lambda r: "".join(r.choice(string.digits) for _ in range(20)),
}


def _iban(rng: random.Random) -> str:
    country = rng.choice(sorted(_IBAN_BBAN))
    bban = _IBAN_BBAN[country](rng)
    numeric = "".join(str(int(c, 36)) for c in bban + country + "00")
    check = 98 - int(numeric) % 97
    iban = f"{country}{check:02d}{bban}"
    return rng.choice([iban, " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))])


def _ip(rng: random.Random) -> str:
    if rng.random() < 0.7:
        return ".".join(str(rng.randint(1, 254)) for _ in range(4))
    groups = [f"{rng.randint(0, 0xFFFF):x}" for _ in range(8)]
    return rng.choice([":".join(groups), f"2001:db8::{groups[0]}:{groups[1]}"])


def _ssn(rng: random.Random) -> str:
    area = rng.choice([n for n in range(1, 900) if n != 666])
    group, serial = rng.randint(1, 99), rng.randint(1, 9999)
    separator = rng.choice(["-", "-", " ", "."])
    return f"{area:03d}{separator}{group:02d}{separator}{serial:04d}"


def _url(rng: random.Random) -> str:
    host = rng.choice(["portal.example.com", "example.org", "files.example.net", "app.ex.io"])
    path = rng.choice(["/account/42/settings", "/u/anna_smith", "/reset?token=8f2k1", "/"])
    return rng.choice([f"https://{host}{path}", f"http://{host}{path}", f"www.{host}{path}"])


_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def _base58check(payload: bytes) -> str:
    data = payload + hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]
    number, text = int.from_bytes(data, "big"), ""
    while number:
        number, rest = divmod(number, 58)
        text = _B58[rest] + text
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + text


def _bech32_polymod(values: list[int]) -> int:
    generator = [0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3]
    check = 1
    for value in values:
        top = check >> 25
        check = (check & 0x1FFFFFF) << 5 ^ value
        for i in range(5):
            check ^= generator[i] if (top >> i) & 1 else 0
    return check


def _bech32(rng: random.Random) -> str:
    hrp, data = "bc", [0] + [rng.randrange(32) for _ in range(32)]  # v0, 20-byte program
    expanded = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]
    polymod = _bech32_polymod(expanded + data + [0] * 6) ^ 1
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_BECH32[d] for d in data + checksum)


def _crypto(rng: random.Random) -> str:
    kind = rng.choice(["p2pkh", "p2sh", "bech32"])
    if kind == "bech32":
        return _bech32(rng)
    version = b"\x00" if kind == "p2pkh" else b"\x05"
    return _base58check(version + rng.randbytes(20))


def _chars(rng: random.Random, alphabet: str, count: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(count))


_ALNUM = string.ascii_letters + string.digits


def _mixed(rng: random.Random, count: int) -> str:
    while True:
        text = _chars(rng, _ALNUM, count)
        if (
            any(c.isdigit() for c in text)
            and any(c.isupper() for c in text)
            and any(c.islower() for c in text)
        ):
            return text


def _jwt(rng: random.Random) -> str:
    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    header = part({"alg": rng.choice(["HS256", "RS256"]), "typ": "JWT"})
    payload = part({"sub": str(rng.randint(1, 10**9)), "name": rng.choice(_FIRST)})
    signature = base64.urlsafe_b64encode(rng.randbytes(32)).rstrip(b"=").decode()
    return f"{header}.{payload}.{signature}"


def _pem(rng: random.Random) -> str:
    kind = rng.choice(["RSA ", "EC ", "", "OPENSSH "])
    lines = [base64.b64encode(rng.randbytes(48)).decode() for _ in range(rng.randint(3, 8))]
    return (
        f"-----BEGIN {kind}PRIVATE KEY-----\n"
        + "\n".join(lines)
        + (f"\n-----END {kind}PRIVATE KEY-----")
    )


VALUES: dict[str, Callable[[random.Random], str]] = {
    "EMAIL_ADDRESS": _email,
    "PHONE_NUMBER": _phone,
    "CREDIT_CARD": _card,
    "IBAN_CODE": _iban,
    "IP_ADDRESS": _ip,
    "US_SSN": _ssn,
    "URL": _url,
    "CRYPTO": _crypto,
    "AWS_ACCESS_KEY": lambda r: (
        r.choice(["AKIA", "ASIA"]) + _chars(r, string.ascii_uppercase + string.digits, 16)
    ),
    "AWS_SECRET_KEY": lambda r: _chars(r, _ALNUM + "/+", 40),
    "GITHUB_TOKEN": lambda r: (
        r.choice(["ghp_", "gho_", "ghs_"]) + _mixed(r, 36)
        if r.random() < 0.7
        else "github_pat_" + _mixed(r, 22) + "_" + _mixed(r, 59)
    ),
    "SLACK_TOKEN": lambda r: (
        f"xox{r.choice('bpa')}-{r.randint(10**11, 10**12 - 1)}-"
        f"{r.randint(10**11, 10**12 - 1)}-{_mixed(r, 24)}"
    ),
    "OPENAI_API_KEY": lambda r: r.choice(["sk-proj-", "sk-", "sk-svcacct-"]) + _mixed(r, 48),
    "JWT": _jwt,
    "PRIVATE_KEY": _pem,
    "BEARER_TOKEN": lambda r: _mixed(r, 32) + r.choice(["", ".", "-"]) + _mixed(r, 8),
    "URL_PASSWORD": lambda r: _mixed(r, 12) + r.choice(["!", "", "%21"]),
    "PASSWORD": lambda r: _mixed(r, 14),
}
"""Each entity type's value generator (the value alone; the templates place it)."""


# --- where a value is planted --------------------------------------------------------

_GENERAL = {
    "prose": [
        "Hi, I'm writing about my account. You can reach me at {v} if anything is unclear.",
        "Please update my details: the right one is {v}, the old one is wrong.",
        "My colleague said to send {v} to support, so here it is. What happens next?",
    ],
    "chat": [
        "user: can you check why my order failed?\nassistant: sure, what are the details?"
        "\nuser: {v}",
        "user: here is what I have: {v}\nassistant: thanks, looking into it.",
    ],
    "code": [
        'client = Client(endpoint="https://api.example.com", contact="{v}")',
        "# TODO remove before commit: {v}\nresult = run(config)",
        "export CONTACT={v}\npython train.py --epochs 3",
    ],
    "json": ['{{"user": {{"contact": "{v}", "id": 42}}, "plan": "pro"}}', '["{v}", 17, null]'],
    "punctuation": ["({v})", "<{v}>", "'{v}',", "{v}.", "[{v}];", '"{v}"!'],
}
_URL_EMBEDDED = ["https://tracker.example.com/report?contact={v}&lang=en"]
# secrets arrive where secrets are written: labelled, or in their usual place
_LABELLED = {
    "AWS_SECRET_KEY": [
        "aws_secret_access_key = {v}",
        'AWS_SECRET_ACCESS_KEY="{v}"',
        '{{"aws_secret_access_key": "{v}"}}',
    ],
    "BEARER_TOKEN": [
        "curl -H 'Authorization: Bearer {v}' https://api.example.com/v1/items",
        '{{"headers": {{"Authorization": "Bearer {v}"}}}}',
        "I sent the header Authorization: bearer {v} and got a 401.",
    ],
    "URL_PASSWORD": [
        "DATABASE_URL=postgresql://app:{v}@db.internal:5432/prod",
        'engine = create_engine("mysql+pymysql://admin:{v}@10.0.0.5/shop")',
        "my redis is at redis://default:{v}@cache:6379/0 and it times out",
    ],
    "PASSWORD": [
        'password = "{v}"',
        "api_key: {v}",
        '{{"username": "anna", "password": "{v}"}}',
        "the secret={v} was in the logs",
    ],
}


def planted(seed: int = 7, *, per_type: int = 120) -> Iterator[Planted]:
    """``per_type`` texts for each entity type, spread over the shapes."""
    rng = random.Random(seed)
    for entity, make in VALUES.items():
        shapes = {"labelled": _LABELLED[entity]} if entity in _LABELLED else dict(_GENERAL)
        if entity in ("EMAIL_ADDRESS", "PHONE_NUMBER", "IP_ADDRESS") and "url" not in shapes:
            shapes["url"] = _URL_EMBEDDED
        names = sorted(shapes)
        for index in range(per_type):
            shape = names[index % len(names)]
            value = make(rng)
            template = rng.choice(shapes[shape])
            if shape == "json" or (shape == "labelled" and template.startswith("{")):
                value = json.dumps(value)[1:-1]  # as JSON writes it
            yield Planted(entity, value, template.format(v=value), shape)


# --- look-alikes that are not personal data ----------------------------------------------

LOOKALIKES: dict[str, Callable[[random.Random], str]] = {
    "hex address": lambda r: (
        r.choice(["$", "0x", "$00:"]) + _chars(r, "0123456789ABCDEF", 4) + r.choice(["", "00"])
    ),
    "date": lambda r: r.choice(
        [
            f"2024-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}",
            f"{r.randint(1, 28):02d}/{r.randint(1, 12):02d}/20{r.randint(10, 29)}",
            f"March {r.randint(1, 28)}, 20{r.randint(10, 29)}",
        ]
    ),
    "version": lambda r: r.choice(
        [
            f"v{r.randint(0, 9)}.{r.randint(0, 30)}.{r.randint(0, 99)}",
            f"{r.randint(1, 4)}.{r.randint(0, 12)}.{r.randint(0, 9)}-rc.{r.randint(1, 5)}",
            f"python {r.choice(['3.10', '3.11', '3.12'])}.{r.randint(0, 14)}",
        ]
    ),
    "order number": lambda r: r.choice(
        [
            f"#A-{r.randint(1000, 9999)}-{r.randint(1000, 9999)}",
            f"INV-20{r.randint(10, 29)}-{r.randint(0, 999999):06d}",
            f"order {r.randint(10**7, 10**8 - 1)}",
            f"ticket {r.randint(10000, 99999)}",
        ]
    ),
    "timestamp": lambda r: r.choice(
        [
            f"2024-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}T{r.randint(0, 23):02d}:"
            f"{r.randint(0, 59):02d}:{r.randint(0, 59):02d}Z",
            f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:{r.randint(0, 59):02d}"
            f".{r.randint(0, 999):03d}",
            f"ts={r.randint(1_500_000_000, 1_800_000_000)}",
        ]
    ),
    "hash": lambda r: r.choice(
        [
            hashlib.sha1(r.randbytes(8)).hexdigest(),
            hashlib.sha256(r.randbytes(8)).hexdigest(),
            "commit " + hashlib.sha1(r.randbytes(8)).hexdigest()[:7],
        ]
    ),
    "code": lambda r: r.choice(
        [
            "for i in range(10):\n    total += values[i] * 2",
            "LDA #$20\nSTA $2100\nREP #$30",
            "from sklearn.linear_model import LogisticRegression  # sk-learn-compatible estimator",
            "python setup.py sdist && twine upload dist/*",
            "cargo build --release && ./target/release/main.rs",
            "self.id = uuid.uuid4().hex; self.token = tokenizer(text)",
            "std::vector<int> v{1, 2, 3}; auto it = v.begin();",
            'api_key = os.environ["OPENAI_API_KEY"]',
            "SELECT id, created_at FROM orders WHERE total > 100.50 LIMIT 20;",
            "docker run -p 8080:8080 -e MODE=prod image:1.4.2",
        ]
    ),
    "identifier": lambda r: r.choice(
        [
            f"ISBN 978-{r.randint(0, 9)}-{r.randint(10, 99)}-{r.randint(100000, 999999)}"
            f"-{r.randint(0, 9)}",
            f"{r.uniform(-90, 90):.4f}, {r.uniform(-180, 180):.4f}",
            str(uuid.UUID(bytes=r.randbytes(16), version=4)),
            f"ZIP {r.randint(10000, 99999)}",
            f"build {r.randint(2019, 2026)}.{r.randint(1, 12):02d}.{r.randint(100, 9999)}",
            f"node-{r.randint(1, 64)}.cluster.local:{r.randint(1024, 65535)}",
        ]
    ),
    "quantity": lambda r: r.choice(
        [
            f"${r.randint(1, 9)},{r.randint(100, 999)}.{r.randint(0, 99):02d}",
            f"{r.randint(1, 100)}% of {r.randint(1000, 99999)} requests",
            f"{r.randint(100, 999)} ms p99 at {r.randint(1, 40)}k QPS",
        ]
    ),
}
_CLEAN_TEMPLATES = [
    "The release notes mention {v} and nothing else.",
    "Can you explain what {v} means here?",
    "{v}",
    "```\n{v}\n```",
    'The log line was: "{v}" — is that expected?',
]


def lookalikes(seed: int = 11, *, per_kind: int = 120) -> Iterator[tuple[str, str]]:
    """(kind, text) pairs that hold no personal data and no secret."""
    rng = random.Random(seed)
    for kind, make in LOOKALIKES.items():
        for _ in range(per_kind):
            yield kind, rng.choice(_CLEAN_TEMPLATES).format(v=make(rng))
