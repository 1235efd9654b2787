"""The policy model: parsing, every error with its line, glob matching and specificity."""

from __future__ import annotations

import itertools
import textwrap
from pathlib import Path

import pytest

from imgseal.errors import UsageError
from keys import generate, public_pem
from verifier.gate.kube import find_images
from verifier.gate.policy import Specificity, glob_matches, normalise_glob
from verifier.gate.policy_file import PolicyError, load_policy, parse_policy

MINIMAL = """\
version: 1
default: deny                 # deny | allow | warn, for images no rule matches
rules:
  - name: ours
    match: ["registry.example.com/team/**"]
    mode: enforce             # enforce | warn
    require:
      digest: false           # true: a tag-only reference is denied outright
      signatures:
        keys: [keys/team.pub] # paths relative to the policy file, or inline PEM
        threshold: 1
      keyless:
        - identity: "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"
          issuer: "https://token.actions.githubusercontent.com"
      attestations:
        - type: slsaprovenance1
          source_uri: github.com/acme/app
  - name: vendor
    match: ["docker.io/library/*"]
    allow: true
"""


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "team.pub").write_bytes(public_pem(generate("ecdsa-p256")))
    (tmp_path / "keys" / "other.pub").write_bytes(public_pem(generate("ed25519")))
    return tmp_path


def write(directory: Path, text: str) -> Path:
    path = directory / "policy.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def issues(directory: Path, text: str) -> list[tuple[int, str]]:
    with pytest.raises(PolicyError) as info:
        load_policy(write(directory, text))
    assert info.value.exit_code == 2
    return [(i.line, i.message) for i in info.value.issues]


def test_minimal_document_loads_exactly_as_written(policy_dir: Path) -> None:
    policy = load_policy(write(policy_dir, MINIMAL))
    assert policy.default == "deny"
    ours, vendor = policy.rules
    assert ours.name == "ours" and ours.line == 4 and ours.mode == "enforce" and ours.on_error == "deny"
    assert ours.require.signatures is not None and ours.require.signatures.threshold == 1
    assert ours.require.signatures.keys[0].name == "keys/team.pub"
    assert ours.require.keyless[0].issuer == "https://token.actions.githubusercontent.com"
    att = ours.require.attestations[0]
    assert att.predicate_type == "https://slsa.dev/provenance/v1" and att.slsa_checks == {
        "source_uri": "github.com/acme/app"}
    assert vendor.allow and not vendor.require.verifies
    assert policy.select("registry.example.com/team/app").chosen.rule.name == "ours"  # type: ignore[union-attr]
    assert policy.select("docker.io/library/nginx").chosen.rule.name == "vendor"  # type: ignore[union-attr]
    assert policy.select("quay.io/x/y").chosen is None


def test_every_error_is_reported_with_its_line(policy_dir: Path) -> None:
    found = issues(policy_dir, """\
        version: 2
        default: maybe
        colour: red
        rules:
          - name: a
            match: ["Bad/Upper", "x.io/a:tag", "x.io/a**b", "x.io/b@sha256:00"]
            require:
              signatures:
                keys: [keys/missing.pub]
          - name: b
            match: ["y.io/*"]
            require:
              signatures:
                keys: [keys/team.pub]
                threshold: 2
              keyless:
                - identity_regexp: "(["
                  issuer: "https://x"
                - identity: "me"
              attestations:
                - type: nosuchtype
                  where: ["bad expr"]
          - name: c
            match: ["z.io/*"]
            allow: false
          - name: d
            match: ["q.io/*"]
            require: {}
          - name: e
            match: ["y.io/*"]
            deny: true
            mode: audit
        """)
    lines = {line for line, _ in found}
    text = "\n".join(f"{line}: {m}" for line, m in found)
    for line, needle in [(1, "unsupported policy version 2"), (2, "default must be one of"),
                         (3, "unknown key 'colour'"), (6, "component 'Bad'"), (6, "has a tag"),
                         (6, "'**' must be a whole path component"), (6, "has a digest"),
                         (9, "cannot read key file 'keys/missing.pub'"), (15, "threshold 2 is more than the 1 key"),
                         (17, "bad regular expression"), (19, "exactly one of 'issuer' or 'issuer_regexp'"),
                         (21, "unknown predicate type 'nosuchtype'"), (22, "bad --where condition"),
                         (25, "'allow: false' means nothing"), (28, "'require' lists nothing to check"),
                         (30, "is also in rule 'b' (line 11)"), (32, "mode must be one of enforce | warn")]:
        assert any(line == ln and needle in m for ln, m in found), f"line {line}: {needle!r} not in\n{text}"
    assert 0 not in lines


@pytest.mark.parametrize(("text", "needle", "line"), [
    ("version: 1\nrules: []\n", None, None),
    ("rules: []\n", "missing 'version: 1'", 1),
    ("version: 1\n", "missing 'rules'", 1),
    ("version: 1\nrules:\n  - name: x\n    match: ['a.io/*']\n", "needs exactly one of", 3),
    ("version: 1\nrules:\n  - name: x\n    match: []\n    allow: true\n", "must not be empty", 4),
    ("version: 1\nrules:\n  - name: x\n    match: ['a.io/*']\n    allow: yes\n    allow: true\n", "duplicate key", 6),
    ("version: 1\nrules:\n  - name: x\n    match: ['a.io/*']\n    allow: true\n  - name: x\n    match: ['b.io/*']\n"
     "    allow: true\n", "already used on line 3", 6),
    ("version: 1\nrules: [\n", "YAML syntax", 3),
    ("version: 1\n---\nversion: 1\n", "exactly one YAML document", 0),
    ("version: 1\nrules:\n  - name: x\n    match: ['a.io']\n    allow: true\n", "names only a registry", 4),
    ("version: 1\nrules:\n  - name: x\n    match: ['a.io/*']\n    require:\n      attestations: [{type: "
     "slsaprovenance1}]\n", "attestations need signers", 6),
    ("version: 1\nrules:\n  - name: x\n    match: ['a.io/*']\n    require:\n      signatures:\n        keys: "
     "[keys/team.pub, keys/team.pub]\n", "listed twice", 7),
    ("version: 1\nrules:\n  - name: x\n    match: ['a.io/*']\n    require:\n      signatures:\n        keys: "
     "[keys/team.pub]\n        threshold: 0\n", "at least 1", 8),
    ("version: 1\ntrusted_root: nope.json\nrules: []\n", "no such file", 2),
    ("version: 1\ndefault: [deny]\nrules: []\n", "default must be one of deny | allow | warn, not a list", 2),
    ("version: 1\nrules:\n  - name: x\n    match: ['a.io/*']\n    mode: {a: 1}\n    allow: true\n",
     "mode must be one of enforce | warn, not a mapping", 5),
])
def test_single_errors(policy_dir: Path, text: str, needle: str | None, line: int | None) -> None:
    path = policy_dir / "p.yaml"
    path.write_text(text)
    if needle is None:
        assert load_policy(path).rules == ()
        return
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert any(needle in i.message and i.line == line for i in info.value.issues), info.value.issues


def test_private_key_in_keys_is_an_error(policy_dir: Path) -> None:
    from keys import encrypt_private_key

    (policy_dir / "keys" / "secret.key").write_bytes(encrypt_private_key(generate("ecdsa-p256"), b"pw"))
    found = issues(policy_dir, """\
        version: 1
        rules:
          - name: x
            match: ["a.io/*"]
            require: {signatures: {keys: [keys/secret.key]}}
        """)
    assert found[0][0] == 5 and "PUBLIC KEY" in found[0][1]


def test_inline_pem_key(policy_dir: Path) -> None:
    pem = (policy_dir / "keys" / "team.pub").read_text()
    indented = textwrap.indent(pem, " " * 14)
    path = policy_dir / "inline.yaml"
    path.write_text(f"version: 1\nrules:\n  - name: x\n    match: ['a.io/*']\n    require:\n      signatures:\n"
                    f"        keys:\n          - |\n{indented}")
    policy = load_policy(path)
    assert policy.rules[0].require.signatures.keys[0].name == "inline-key-1"  # type: ignore[union-attr]


@pytest.mark.parametrize(("pattern", "name", "matches"), [
    ("registry.example.com/team/**", "registry.example.com/team/app", True),
    ("registry.example.com/team/**", "registry.example.com/team/a/b/c", True),
    ("registry.example.com/team/**", "registry.example.com/team", False),
    ("registry.example.com/team/**", "registry.example.com/teams/app", False),
    ("docker.io/library/*", "docker.io/library/nginx", True),
    ("docker.io/library/*", "docker.io/library/a/b", False),
    ("a.io/**/tools", "a.io/tools", True),
    ("a.io/**/tools", "a.io/x/y/tools", True),
    ("a.io/**/tools", "a.io/x/tools2", False),
    ("*/team/app", "localhost:5000/team/app", True),
    ("**", "anything.io/at/all", True),
    ("**/app", "q.io/x/app", True),
    ("a.io/app-*", "a.io/app-web", True),
    ("a.io/app-*", "a.io/app/web", False),
    ("a.io/x.y", "a.io/xzy", False),  # '.' is literal
])
def test_glob_matching(pattern: str, name: str, matches: bool) -> None:
    assert glob_matches(normalise_glob(pattern), name) is matches


def test_patterns_normalise_like_references() -> None:
    assert normalise_glob("alpine") == "docker.io/library/alpine"
    assert normalise_glob("acme/*") == "docker.io/acme/*"
    assert normalise_glob("index.docker.io/library/*") == "docker.io/library/*"
    for bad in ("", " a.io/x", "a.io//x", "A.io/x", "a.io/x:1", "a.io/**/**", "a.io/x y"):
        with pytest.raises(UsageError):
            normalise_glob(bad)


def test_specificity_order() -> None:
    ranked = ["a.io/team/app", "a.io/team/app-*", "a.io/team/*", "a.io/team/**", "a.io/*/app", "a.io/**", "*/team/app",
              "**"]
    keys = [Specificity.of(p) for p in ranked]
    assert all(a > b for a, b in itertools.pairwise(keys)), [k.describe() for k in keys]
    # equal literal prefix: fewer wildcards wins, then '*' over '**'
    assert Specificity.of("a.io/t/*/x") > Specificity.of("a.io/t/*/*")
    assert Specificity.of("a.io/t/*") > Specificity.of("a.io/t/**")


def test_most_specific_rule_wins_and_the_others_are_listed(policy_dir: Path) -> None:
    policy = load_policy(write(policy_dir, """\
        version: 1
        default: warn
        rules:
          - name: everything
            match: ["**"]
            deny: true
          - name: team
            match: ["a.io/team/**"]
            require: {signatures: {keys: [keys/team.pub]}}
          - name: app
            match: ["a.io/team/app", "b.io/*"]
            allow: true
        """))
    sel = policy.select("a.io/team/app")
    assert sel.chosen is not None and sel.chosen.rule.name == "app"
    assert [m.rule.name for m in sel.also_matched] == ["team", "everything"]
    assert policy.select("a.io/team/web").chosen.rule.name == "team"  # type: ignore[union-attr]
    assert policy.select("c.io/x").chosen.rule.name == "everything"  # type: ignore[union-attr]
    assert policy.default == "warn"


def test_fingerprint_changes_with_key_content(policy_dir: Path) -> None:
    text = MINIMAL
    before = load_policy(write(policy_dir, text)).rules[0].fingerprint
    (policy_dir / "keys" / "team.pub").write_bytes(public_pem(generate("ecdsa-p256")))
    assert load_policy(write(policy_dir, text)).rules[0].fingerprint != before
    assert load_policy(write(policy_dir, text)).rules[1].fingerprint == load_policy(
        write(policy_dir, text)).rules[1].fingerprint


def test_policy_bytes_not_utf8() -> None:
    with pytest.raises(PolicyError, match="not UTF-8"):
        parse_policy(b"version: 1\n\xff\n")


def test_find_images_kinds_and_errors() -> None:
    from imgseal.errors import InvalidInputError

    cron = {"kind": "CronJob", "metadata": {"name": "c"}, "spec": {"jobTemplate": {"spec": {"template": {"spec": {
        "containers": [{"image": "a"}], "ephemeralContainers": [{"image": "b"}]}}}}}}
    sites = find_images({"kind": "List", "items": [cron, {"kind": "Service"}, {"kind": "Pod", "spec": {
        "initContainers": [{"image": "c"}], "containers": [{"image": "d"}]}}]})
    assert [(s.image, s.pointer) for s in sites] == [
        ("a", "/items/0/spec/jobTemplate/spec/template/spec/containers/0/image"),
        ("b", "/items/0/spec/jobTemplate/spec/template/spec/ephemeralContainers/0/image"),
        ("d", "/items/2/spec/containers/0/image"), ("c", "/items/2/spec/initContainers/0/image")]
    with pytest.raises(InvalidInputError, match="no image string"):
        find_images({"kind": "Pod", "spec": {"containers": [{"name": "x"}]}})
    with pytest.raises(InvalidInputError, match="not a list"):
        find_images({"kind": "Deployment", "spec": {"template": {"spec": {"containers": {"image": "x"}}}}})


NOTATION_RULE = """\
    version: 1
    rules:
      - name: signed
        match: ["registry.example.com/app"]
        require:
          notation:
            trust_policy: notation/trustpolicy.json
            trust_store: notation/store
    """


def _notation_files(directory: Path, *, store_name: str = "ours") -> None:
    import json

    base = directory / "notation"
    (base / "store" / "x509" / "ca" / store_name).mkdir(parents=True, exist_ok=True)
    (base / "store" / "x509" / "ca" / store_name / "root.pem").write_text("not checked at load")
    (base / "trustpolicy.json").write_text(json.dumps({"version": "1.0", "trustPolicies": [{
        "name": "p", "registryScopes": ["*"], "signatureVerification": {"level": "strict"},
        "trustStores": ["ca:ours"], "trustedIdentities": ["*"]}]}))


def test_notation_requirement_loads_relative_to_the_policy_file(policy_dir: Path) -> None:
    from verifier.gate.policy import describe_rule

    _notation_files(policy_dir)
    rule = load_policy(write(policy_dir, NOTATION_RULE)).rules[0]
    req = rule.require.notation
    assert req is not None and rule.require.verifies
    assert req.trust_policy == policy_dir / "notation" / "trustpolicy.json"
    assert req.trust_store == policy_dir / "notation" / "store"
    assert req.document.statements[0].name == "p"
    assert any(line.startswith("notation:") for line in describe_rule(rule))
    # The fingerprint (success-cache key) follows the trust store's contents.
    before = rule.fingerprint
    (policy_dir / "notation" / "store" / "x509" / "ca" / "ours" / "root.pem").write_text("another CA")
    assert load_policy(write(policy_dir, NOTATION_RULE)).rules[0].fingerprint != before


def test_notation_requirement_errors_have_lines(policy_dir: Path) -> None:
    # Nothing on disk: both paths are reported, each on its own line.
    got = issues(policy_dir, NOTATION_RULE)
    assert [line for line, _ in got] == [7, 8], got
    assert "trust_policy: no such file" in got[0][1] and "trust_store: no such directory" in got[1][1]
    # A trust policy that is not notation's format; a store lacking the named ca:ours.
    _notation_files(policy_dir, store_name="theirs")
    got = issues(policy_dir, NOTATION_RULE)
    assert len(got) == 1 and got[0][0] == 8 and "ca:ours" in got[0][1], got
    (policy_dir / "notation" / "trustpolicy.json").write_text('{"version": "1.0"}')
    got = issues(policy_dir, NOTATION_RULE)
    assert got[0][0] == 7 and "trust_policy" in got[0][1], got
    got = issues(policy_dir, NOTATION_RULE.replace("trust_store: notation/store", "store: x"))
    assert (7, "rule 'signed' notation: missing 'trust_store'") in got, got  # the mapping starts on line 7
    assert any(line == 8 and "unknown key 'store'" in message for line, message in got), got


def test_gate_fast_reader_lines_and_duplicate_keys(tmp_path: Path) -> None:
    from imgseal.errors import InvalidInputError
    from verifier.gate.kube import collect_manifests, render_pinned
    from verifier.gate.verdict import Verdict

    text = textwrap.dedent("""\
        # comment
        apiVersion: v1
        kind: Pod
        metadata: {name: p}
        spec:
          containers:
            - name: a
              image: registry.example.com/app:v1
        """)
    (tmp_path / "pod.yaml").write_text(text)
    (mf,) = collect_manifests([str(tmp_path / "pod.yaml")])
    assert not mf.round_trip
    (site,) = mf.sites[0]
    assert (site.image, site.line, site.pointer) == ("registry.example.com/app:v1", 8, "/spec/containers/0/image")
    (rt,) = collect_manifests([str(tmp_path / "pod.yaml")], round_trip=True)
    assert [s.line for s in rt.sites[0]] == [8]
    # Rendering (for --pin) re-reads in round-trip form: comments survive.
    digest = "sha256:" + "a" * 64
    verdict = Verdict(site.image, "allow", "verified", "ok", "r", site.image, digest)
    rendered, changed = render_pinned(mf, lambda _site: verdict)
    assert changed == 1 and rendered.startswith("# comment\n")
    assert f"image: registry.example.com/app:v1@{digest}" in rendered
    # A second 'image' key: the API server might see the other one, so the file is refused.
    (tmp_path / "pod.yaml").write_text(text + "      image: evil.example.com/x:v1\n")
    with pytest.raises(InvalidInputError, match="duplicate key 'image'"):
        collect_manifests([str(tmp_path / "pod.yaml")])


GITHUB_RULE = """\
version: 1
rules:
  - name: gh
    match: ["ghcr.io/acme/**"]
    require:
      github:
{body}
"""


def test_github_requirement_loads(policy_dir: Path) -> None:
    policy = parse_policy(GITHUB_RULE.format(body="""\
        repo: acme/app
        signer_workflow: acme/app/.github/workflows/release.yml
        source_ref: refs/heads/main
        deny_self_hosted_runners: true
        predicate_type: slsaprovenance1""").encode(), base=policy_dir)
    (rule,) = policy.rules
    assert rule.require.verifies and rule.require.github is not None
    gh = rule.require.github.policy
    assert (gh.owner, gh.repo, gh.deny_self_hosted_runners) == ("acme", "acme/app", True)
    assert gh.predicate_type == "https://slsa.dev/provenance/v1"
    fingerprint = rule.fingerprint
    other = parse_policy(GITHUB_RULE.format(body="        repo: acme/app").encode(), base=policy_dir)
    assert other.rules[0].fingerprint != fingerprint


@pytest.mark.parametrize(("body", "needle", "line"), [
    ("        owner: acme\n        repo: acme/app", "exactly one of github.owner", 7),
    ("        repo: acme", "github.repo must be OWNER/REPO", 7),
    ("        owner: acme\n        signer_workflow: acme/app", "github.signer_workflow must be", 8),
    ("        owner: acme\n        source_ref: main", "github.source_ref is a full git ref", 8),
    ("        owner: acme\n        deny_self_hosted_runners: maybe", "deny_self_hosted_runners", 8),
    ("        owner: acme\n        colour: blue", "colour", 8),
    ("        owner: acme\n        predicate_type: nonsense", "predicate", 8),
    ("        owner: acme\n        certificate_identity_regexp: '('", "regular expression", 8),
])
def test_github_requirement_errors_name_their_line(policy_dir: Path, body: str, needle: str, line: int) -> None:
    found = issues(policy_dir, GITHUB_RULE.format(body=body))
    assert any(needle in message and at == line for at, message in found), found
