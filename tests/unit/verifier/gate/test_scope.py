"""Namespaces and exceptions in the policy: reading (every error with its line), matching,
ranking against image patterns, expiry, and what the evaluator decides (no registry needed:
every rule here decides without fetching)."""

from __future__ import annotations

import datetime as dt
import json
import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imgseal.errors import UsageError
from imgseal.store import StoreFactory
from verifier.gate.evaluator import Evaluator
from verifier.gate.policy import Policy, Rule
from verifier.gate.policy_file import PolicyError, load_policy
from verifier.gate.scope import namespace_matches, parse_until

TODAY = dt.datetime.now(dt.UTC).date()
TOMORROW = TODAY + dt.timedelta(days=1)
YESTERDAY = TODAY - dt.timedelta(days=1)


def load(tmp_path: Path, text: str) -> Policy:
    path = tmp_path / "policy.yaml"
    path.write_text(textwrap.dedent(text))
    return load_policy(path)


def problems(tmp_path: Path, text: str) -> list[tuple[int, str]]:
    with pytest.raises(PolicyError) as info:
        load(tmp_path, text)
    return [(i.line, i.message) for i in info.value.issues]


NAMESPACED = """\
version: 1
default: deny
exclude_namespaces: ["kube-*", "imgseal-system"]
rules:
  - name: team
    match: ["a.io/team/**"]
    allow: true
  - name: team-prod
    match: ["a.io/team/**"]
    namespaces: ["prod"]
    deny: true
  - name: team-staging
    match: ["a.io/team/**"]
    namespaces: ["staging-*", "qa"]
    require: {digest: true}
  - name: app-exact
    match: ["a.io/team/app"]
    allow: true
  - name: anything-in-sandbox
    match: ["**"]
    namespaces: ["sandbox-*"]
    allow: true
"""


def decide(policy: Policy, image: str, namespace: str | None, *,
           now: dt.datetime | None = None) -> tuple[str, str, str | None]:
    clock = (lambda: now) if now is not None else None
    verdict = Evaluator(policy, StoreFactory(), clock=clock).plan(image, namespace=namespace).verdict
    assert verdict is not None, "every rule here decides without the registry"
    return verdict.decision, verdict.reason, verdict.rule


@pytest.mark.parametrize(("glob", "namespace", "matches"), [
    ("prod", "prod", True), ("prod", "prod2", False), ("team-*", "team-a", True), ("team-*", "team-", True),
    ("team-*", "team", False), ("*-prod", "eu-prod", True), ("*", "default", True), ("a*b", "a-x-b", True),
    ("a*b", "a-x-c", False),
])
def test_namespace_globs(glob: str, namespace: str, matches: bool) -> None:
    assert namespace_matches(glob, namespace) is matches


def test_a_namespaced_rule_outranks_the_same_pattern_without_one(tmp_path: Path) -> None:
    policy = load(tmp_path, NAMESPACED)
    assert decide(policy, "a.io/team/web:v1", "dev") == ("allow", "allowed-by-rule", "team")
    assert decide(policy, "a.io/team/web:v1", "prod") == ("deny", "denied-by-rule", "team-prod")
    assert decide(policy, "a.io/team/web:v1", "staging-eu") == ("deny", "tag-only", "team-staging")
    assert decide(policy, "a.io/team/web@sha256:" + "a" * 64, "qa")[2] == "team-staging"
    sel = policy.select("a.io/team/web", "prod")
    assert sel.chosen is not None and sel.chosen.namespace_glob == "prod"
    assert [m.rule.name for m in sel.also_matched] == ["team"]  # the namespaced sandbox rule did not match


def test_a_more_specific_image_pattern_still_outranks_a_namespaced_rule(tmp_path: Path) -> None:
    policy = load(tmp_path, NAMESPACED)
    # a.io/team/app is exact: it beats 'team-prod' (a glob) even in prod, as docs/policy.md ranks.
    assert decide(policy, "a.io/team/app:v1", "prod") == ("allow", "allowed-by-rule", "app-exact")
    # '**' in sandbox-* is the least specific pattern: team still wins there for team images ...
    assert decide(policy, "a.io/team/web:v1", "sandbox-1")[2] == "team"
    # ... and it decides everything else in the sandbox namespaces.
    assert decide(policy, "quay.io/x/y:v1", "sandbox-1") == ("allow", "allowed-by-rule", "anything-in-sandbox")
    assert decide(policy, "quay.io/x/y:v1", "dev") == ("deny", "no-matching-rule", None)


def test_an_exact_namespace_outranks_a_namespace_glob(tmp_path: Path) -> None:
    policy = load(tmp_path, """\
        version: 1
        rules:
          - {name: glob, match: ["a.io/**"], namespaces: ["team-*"], deny: true}
          - {name: exact, match: ["a.io/**"], namespaces: ["team-a"], allow: true}
          - {name: longer-prefix, match: ["a.io/**"], namespaces: ["team-b*"], allow: true}
        """)
    assert decide(policy, "a.io/x:v1", "team-a")[2] == "exact"
    assert decide(policy, "a.io/x:v1", "team-b1")[2] == "longer-prefix"
    assert decide(policy, "a.io/x:v1", "team-c")[2] == "glob"


def test_an_unknown_namespace_is_undecided_only_where_a_namespaced_rule_could_decide(tmp_path: Path) -> None:
    policy = load(tmp_path, NAMESPACED)
    decision, reason, _ = decide(policy, "a.io/team/web:v1", None)
    assert (decision, reason) == ("error", "namespace-unknown")
    verdict = Evaluator(policy, StoreFactory()).plan("a.io/team/web:v1").verdict
    assert verdict is not None and "'team-prod' (namespaces prod)" in verdict.message
    # app-exact outranks every namespaced rule for this image, so the namespace does not matter.
    assert decide(policy, "a.io/team/app:v1", None) == ("allow", "allowed-by-rule", "app-exact")
    # '**' in sandbox-* could decide quay.io/x/y (no other rule matches it): undecided.
    assert decide(policy, "quay.io/x/y:v1", None)[1] == "namespace-unknown"


def test_excluded_namespaces_admit_without_checks(tmp_path: Path) -> None:
    policy = load(tmp_path, NAMESPACED)
    assert decide(policy, "a.io/team/web:v1", "kube-system") == ("allow", "namespace-excluded", None)
    assert decide(policy, "evil.io/x:v1", "imgseal-system")[1] == "namespace-excluded"
    assert decide(policy, "evil.io/x:v1", "kube")[1] == "no-matching-rule"  # 'kube-*' needs the dash


def exceptions_policy(until_ok: str, until_old: str) -> str:
    return f"""\
        version: 1
        default: deny
        rules:
          - {{name: blocked, match: ["a.io/legacy/**"], deny: true}}
        exceptions:
          - images: ["a.io/legacy/batch"]
            namespaces: ["jobs-*"]
            until: {until_ok}
            reason: "INC-42: batch runner migrates in Q1"
          - images: ["a.io/legacy/old"]
            until: {until_old}
            reason: expired waiver
          - images: ["b.io/tools/*"]
            until: {until_ok}
            reason: vendor images, unsigned upstream
        """


def test_exceptions_admit_with_a_warning_and_outrank_rules(tmp_path: Path) -> None:
    policy = load(tmp_path, exceptions_policy(TOMORROW.isoformat(), YESTERDAY.isoformat()))
    evaluator = Evaluator(policy, StoreFactory())
    verdict = evaluator.plan("a.io/legacy/batch:v3", namespace="jobs-nightly").verdict
    assert verdict is not None and (verdict.decision, verdict.reason) == ("warn", "policy-exception")
    assert verdict.admitted and verdict.exception is not None
    assert "exception #1 (line 6" in verdict.exception and "INC-42" in verdict.exception
    # Not in a listed namespace, or where the namespace is unknown: the deny rule applies.
    assert decide(policy, "a.io/legacy/batch:v3", "web") == ("deny", "denied-by-rule", "blocked")
    assert decide(policy, "a.io/legacy/batch:v3", None) == ("deny", "denied-by-rule", "blocked")
    # Expired: ignored.
    assert decide(policy, "a.io/legacy/old:v1", "jobs-x") == ("deny", "denied-by-rule", "blocked")
    # No namespaces: every namespace, known or not.
    assert decide(policy, "b.io/tools/jq:1", None)[1] == "policy-exception"


def test_an_exception_ends_at_its_instant_in_a_running_evaluator(tmp_path: Path) -> None:
    policy = load(tmp_path, exceptions_policy("2030-06-30", "2030-06-30T12:00:00+02:00"))
    last_day = dt.datetime(2030, 6, 30, 23, 59, 59, tzinfo=dt.UTC)
    assert decide(policy, "b.io/tools/jq:1", None, now=last_day)[1] == "policy-exception"  # a date holds all day
    assert decide(policy, "b.io/tools/jq:1", None, now=last_day + dt.timedelta(seconds=1))[1] == "no-matching-rule"
    before = dt.datetime(2030, 6, 30, 9, 59, 59, tzinfo=dt.UTC)  # 12:00+02:00 is 10:00 UTC
    assert decide(policy, "a.io/legacy/old:1", None, now=before)[1] == "policy-exception"
    assert decide(policy, "a.io/legacy/old:1", None, now=before + dt.timedelta(seconds=1))[1] == "denied-by-rule"


def test_until_forms() -> None:
    assert parse_until(dt.date(2030, 1, 31)) == (dt.datetime(2030, 2, 1, tzinfo=dt.UTC), "2030-01-31")
    assert parse_until("2030-01-31")[0] == dt.datetime(2030, 2, 1, tzinfo=dt.UTC)
    assert parse_until("2030-01-31T10:00:00Z")[0] == dt.datetime(2030, 1, 31, 10, tzinfo=dt.UTC)


def test_until_refuses_compact_iso_forms_and_names_what_was_written(tmp_path: Path) -> None:
    # datetime.fromisoformat also takes ISO 8601's basic format (20300131, 20300131T1000Z): the
    # docs promise YYYY-MM-DD or a zoned timestamp, and an unquoted 20300131 is a YAML int that
    # must not turn into a date (nor be echoed back as "2030-01-31T00:00:00").
    for text in ("20300131", "20300131T100000Z", "2030-W05-1"):
        with pytest.raises(UsageError, match="not a date"):
            parse_until(text)
    got = problems(tmp_path, """\
        version: 1
        rules: []
        exceptions:
          - {images: ["a.io/x"], until: 20300131, reason: compact}
          - {images: ["a.io/x"], until: {on: 2030-01-31}, reason: mapping}
        """)
    assert any(line == 4 and "until '20300131': not a date" in m for line, m in got), got
    assert any(line == 5 and "until a mapping: not a date" in m for line, m in got), got
    assert not any("Node" in m for _, m in got), got


def test_namespace_and_exception_errors_have_lines(tmp_path: Path) -> None:
    got = problems(tmp_path, """\
        version: 1
        exclude_namespaces: ["Kube-System", "ok", "ok"]
        rules:
          - name: a
            match: ["a.io/**"]
            namespaces: ["team/a", "**", "x-"]
            allow: true
          - name: b
            match: ["a.io/**"]
            namespaces: "prod"
            allow: true
        exceptions:
          - images: ["a.io/x"]
            until: 2030-02-30
            reason: bad day
          - images: ["A.io/x:tag"]
            until: tomorrow
            reason: ""
          - images: ["a.io/x"]
            until: 2030-01-01 10:00:00
            reason: no zone
          - {images: ["a.io/x"], reason: no end}
          - {images: ["a.io/x"], until: [2030-01-01], reason: list, ticket: 1}
          - {images: [], until: 2030-01-01, reason: empty}
        """)
    messages = dict(got)
    assert any(line == 2 and "'Kube-System'" in m for line, m in got), got
    assert any(line == 2 and "'ok' listed twice" in m for line, m in got), got
    assert any(line == 6 and "'team/a'" in m for line, m in got), got
    assert any(line == 6 and "'**' means nothing" in m for line, m in got), got
    assert any(line == 6 and "'x-'" in m for line, m in got), got
    assert "rule 'b' namespaces must be a list" in messages.get(10, ""), got
    assert any(line == 14 and "exception #1" in m and "2030-02-30" in m for line, m in got), got
    assert any(line == 16 and "exception #2 images" in m and "bad pattern" in m for line, m in got), got
    assert any(line == 17 and "'tomorrow'" in m for line, m in got), got
    assert any(line == 18 and "exception #2 reason must be a non-empty string" in m for line, m in got), got
    assert any(line == 20 and "give a time zone" in m for line, m in got), got
    assert any(line == 22 and "missing 'until'" in m for line, m in got), got
    assert any(line == 23 and "unknown key 'ticket'" in m for line, m in got), got
    assert any(line == 23 and "exception #5" in m and "not a date" in m for line, m in got), got
    assert any(line == 24 and "exception #6 images must not be empty" in m for line, m in got), got


def test_the_same_pattern_twice_is_an_error_only_for_a_shared_namespace(tmp_path: Path) -> None:
    got = problems(tmp_path, """\
        version: 1
        rules:
          - {name: a, match: ["a.io/**"], allow: true}
          - {name: b, match: ["a.io/**"], namespaces: ["prod", "qa"], allow: true}
          - {name: c, match: ["a.io/**"], namespaces: ["dev", "qa"], allow: true}
          - {name: d, match: ["a.io/**"], allow: true}
        """)
    assert got == [
        (5, "rule 'c': pattern 'a.io/**' is also in rule 'b' (line 4) for namespace 'qa'; "
            "which rule applies would be ambiguous"),
        (6, "rule 'd': pattern 'a.io/**' is also in rule 'a' (line 3); which rule applies would be ambiguous"),
    ]


def test_policy_check_warns_about_expired_exceptions(tmp_path: Path, cli) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(textwrap.dedent(exceptions_policy(TOMORROW.isoformat(), YESTERDAY.isoformat())))
    r = cli("policy", "check", str(path))
    assert r.code == 0, r.stderr
    assert r.stderr.strip() == (f"{path}:10: warning: exception #2 expired ({YESTERDAY.isoformat()}); it is ignored: "
                                "remove it or give a new 'until'")
    assert "3 exception(s)" in r.stdout


@pytest.mark.parametrize(("globs", "warned"), [(["*"], True), (["kube-*", "*"], True), (["team-*"], False)])
def test_policy_check_warns_when_exclude_namespaces_matches_everything(tmp_path: Path, cli, globs: list[str],
                                                                       warned: bool) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("version: 1\ndefault: deny\nexclude_namespaces: " + json.dumps(globs) + "\n"
                    "rules:\n  - {name: a, match: ['a.io/**'], allow: true}\n")
    r = cli("policy", "check", str(path))
    assert r.code == 0, r.stderr
    assert (f"{path}: warning: exclude_namespaces '*' matches every namespace: nothing is checked"
            in r.stderr) is warned


def test_policy_explain_with_and_without_namespace(tmp_path: Path, cli) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(NAMESPACED)
    r = cli("policy", "explain", str(path), "a.io/team/web:v1", "--namespace", "prod")
    assert r.code == 0, r.stderr
    assert "rule:       'team-prod' (line 8)" in r.stdout
    assert "namespace 'prod' (exact)" in r.stdout and "  - namespaces: prod" in r.stdout
    assert "also matched, less specific: 'team' (line 5)" in r.stdout
    r = cli("policy", "explain", str(path), "a.io/team/web:v1")
    assert r.code == 0, r.stderr
    assert "! depends on the namespace: rule 'team-prod' (line 8) would apply in prod\n" in r.stdout
    assert "rule 'team-staging' (line 12) would apply in staging-*, qa\n" in r.stdout
    assert "without a namespace the gate leaves this image undecided (exit 3)" in r.stdout
    assert "rule:       'team' (line 5)" in r.stdout
    r = cli("policy", "explain", str(path), "a.io/team/web:v1", "-n", "kube-public")
    assert "excluded:   namespace 'kube-public' matches exclude_namespaces 'kube-*'" in r.stdout
    r = cli("policy", "explain", str(path), "a.io/team/web:v1", "--namespace", "Prod")
    assert r.code == 2 and "'Prod' is not a namespace name" in r.stderr


# -- the ranking, as a property ------------------------------------------------------------------

PATTERNS = ["a.io/**", "a.io/team/**", "a.io/team/*", "a.io/team/app", "**", "*/team/app"]
NAMESPACE_GLOBS = ["prod", "prod-*", "*-prod", "*", "team-a", "team-*"]
NAMES = ["a.io/team/app", "a.io/team/web", "a.io/other", "b.io/team/app"]


def witness(glob: str) -> str:
    """A namespace the glob matches."""
    return glob.replace("*", "x")


@given(st.lists(st.tuples(st.sampled_from(PATTERNS), st.lists(st.sampled_from(NAMESPACE_GLOBS), max_size=2,
                                                                unique=True)), min_size=1, max_size=6),
       st.sampled_from(NAMES))
def test_an_unknown_namespace_is_undecided_exactly_when_some_namespace_would_change_the_rule(
        specs: list[tuple[str, list[str]]], name: str) -> None:
    rules = tuple(Rule(f"r{i}", (pattern,), i + 1, allow=True, namespaces=tuple(globs))
                  for i, (pattern, globs) in enumerate(specs))
    policy = Policy("<test>", "deny", rules)
    unknown = policy.select(name, None)
    without = unknown.chosen.rule.name if unknown.chosen else None
    candidates = {witness(g) for g in NAMESPACE_GLOBS} | {"elsewhere"}
    chosen_in = {ns: (c.rule.name if (c := policy.select(name, ns).chosen) else None) for ns in candidates}
    for ns, chosen in chosen_in.items():
        sel = policy.select(name, ns)
        # The chosen rule is a maximum of everything that matched, by rank.
        assert all(sel.chosen is not None and sel.chosen.rank >= m.rank for m in sel.also_matched)
        if not unknown.unresolved:
            assert chosen == without, (ns, specs)
    for m in unknown.unresolved:
        assert any(chosen_in[witness(g)] != without for g in m.rule.namespaces), (m.rule.name, specs)


def test_explain_help_speaks_of_the_image_not_of_manifest_objects(cli) -> None:
    # explain takes one image, no manifests: there is no object whose metadata.namespace could win
    r = cli("policy", "explain", "--help", env={"COLUMNS": "200"})
    assert r.code == 0, r.stderr
    text = " ".join(r.stdout.split())
    assert "metadata.namespace" not in text
    assert "Namespace IMAGE would run in" in text
    r = cli("gate", "--help", env={"COLUMNS": "200"})
    assert "objects' own metadata.namespace is used where given" in " ".join(r.stdout.split())
