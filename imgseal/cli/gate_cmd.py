"""``imgseal policy check|explain``, ``imgseal gate`` and ``imgseal webhook serve``: the deploy gate.

Exit codes: ``policy check`` 0 valid / 2 invalid (every error listed with its line);
``gate`` 0 every image admitted, 1 any denied, 2 bad input, 3 any undecidable (and none denied).
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from imgseal.cli._common import (
    CaFileOption,
    InsecureOption,
    ReferrersModeOption,
    emit_json,
    err,
    fail,
    guarded,
    out,
    store_factory,
)
from imgseal.errors import Error, InvalidInputError, UsageError

if TYPE_CHECKING:
    from verifier.gate.policy import Policy
    from verifier.gate.report import GateReport


class GateFormat(StrEnum):
    text = "text"
    json = "json"
    sarif = "sarif"


PolicyOption = Annotated[Path, typer.Option("--policy", "-p", help="Policy file (YAML, version: 1).", dir_okay=False)]


def _namespace_name(value: str | None) -> str | None:
    from verifier.gate.scope import is_namespace

    if value is not None and not is_namespace(value):
        raise typer.BadParameter(f"{value!r} is not a namespace name (a-z, 0-9, '-', at most 63 characters)")
    return value


NamespaceOption = Annotated[str | None, typer.Option(
    "--namespace", "-n", callback=_namespace_name,
    help="Namespace the images run in (rules with 'namespaces', exclude_namespaces, exceptions); "
         "objects' own metadata.namespace is used where given.")]
ExplainNamespaceOption = Annotated[str | None, typer.Option(
    "--namespace", "-n", callback=_namespace_name,
    help="Namespace IMAGE would run in (rules with 'namespaces', exclude_namespaces, exceptions); "
         "without it, what depends on the namespace is shown as undecided, as the gate would leave it.")]


def register(app: typer.Typer) -> None:
    policy_app = typer.Typer(help="Check and explain deploy-gate policy files.", no_args_is_help=True)
    policy_app.command("check")(policy_check)
    policy_app.command("explain")(policy_explain)
    app.add_typer(policy_app, name="policy")
    app.command("gate")(gate)
    webhook_app = typer.Typer(help="Kubernetes admission webhook.", no_args_is_help=True)
    webhook_app.command("serve")(webhook_serve)
    app.add_typer(webhook_app, name="webhook")


def _load(path: Path) -> Policy:
    from verifier.gate.policy_file import load_policy

    return load_policy(path)


def policy_check(
    file: Annotated[Path, typer.Argument(help="Policy file.", dir_okay=False)],
) -> None:
    """Validate a policy file; list EVERY problem as FILE:LINE: message. Exit 0 valid, 2 invalid."""
    from verifier.gate.policy_file import PolicyError

    try:
        policy = _load(file)
    except PolicyError as e:
        for issue in e.issues:
            err(issue.render(str(file)))
        err(f"imgseal: error: {file}: {len(e.issues)} problem(s)")
        raise typer.Exit(2) from None
    except Error as e:
        fail(e)
    import datetime as dt

    now = dt.datetime.now(dt.UTC)
    for exception in policy.exceptions:
        if not exception.active(now):
            err(f"{file}:{exception.line}: warning: exception #{exception.number} expired ({exception.until_text}); "
                "it is ignored: remove it or give a new 'until'")
    for glob in policy.exclude_namespaces:
        if set(glob) == {"*"}:
            # Valid, and sometimes meant (a dry run of the webhook), but it turns the gate off: say so.
            err(f"{file}: warning: exclude_namespaces {glob!r} matches every namespace: nothing is checked")
    out(f"{file}: valid: {len(policy.rules)} rule(s), default {policy.default}"
        + (f", {len(policy.exceptions)} exception(s)" if policy.exceptions else ""))


def policy_explain(
    file: Annotated[Path, typer.Argument(help="Policy file.", dir_okay=False)],
    image: Annotated[str, typer.Argument(help="Image reference.")],
    namespace: ExplainNamespaceOption = None,
) -> None:
    """Show which rule applies to IMAGE (in --namespace) and why, and which other rules matched but were less
    specific."""

    def run() -> None:
        import datetime as dt

        from verifier.gate.policy import describe_rule, describe_scope, reference_name

        policy = _load(file)
        ref, name = reference_name(image)
        out(f"image:      {image}")
        out(f"normalised: {ref} (matched on the name {name})")
        out(f"namespace:  {namespace if namespace is not None else 'not given (rules with namespaces do not apply)'}")
        excluded = policy.excluded(namespace)
        if excluded is not None:
            out(f"excluded:   namespace {namespace!r} matches exclude_namespaces {excluded!r}: admitted without checks")
            return
        exception = policy.exception_for(name, namespace, dt.datetime.now(dt.UTC))
        if exception is not None:
            out(f"exception:  admitted with a warning, without checks, by {exception.label()}")
            return
        selection = policy.select(name, namespace)
        for unresolved in selection.unresolved:
            out(f"  ! depends on the namespace: rule {unresolved.rule.name!r} (line {unresolved.rule.line}) "
                f"would apply in {', '.join(unresolved.rule.namespaces)}")
        if selection.unresolved:
            out("  ! so without a namespace the gate leaves this image undecided (exit 3): give --namespace")
        if selection.chosen is None:
            out(f"rule:       none matches; default: {policy.default}")
            return
        chosen = selection.chosen
        out(f"rule:       {chosen.rule.name!r} (line {chosen.rule.line})")
        out(f"because:    {chosen.describe()} matches")
        out(f"  - {describe_scope(chosen.rule)}")
        for line in describe_rule(chosen.rule):
            out(f"  - {line}")
        if chosen.rule.require.digest and ref.digest is None:
            out("  ! this reference names no digest, so this rule denies it")
        for other in selection.also_matched:
            out(f"also matched, less specific: {other.rule.name!r} (line {other.rule.line}) via {other.describe()}")

    guarded(run)


def gate(
    paths: Annotated[list[str] | None, typer.Argument(help="Manifest files or directories; '-' for stdin.")] = None,
    policy: PolicyOption = Path("policy.yaml"),
    pin: Annotated[bool, typer.Option("--pin", help="Print the manifests with admitted tags pinned to digests.")]
    = False,
    write: Annotated[bool, typer.Option("--write", help="With --pin: rewrite the files in place (atomically).")]
    = False,
    output: Annotated[GateFormat, typer.Option("--output", "-o", help="Report format.")] = GateFormat.text,
    cache_dir: Annotated[Path | None, typer.Option("--cache-dir", help="Success cache directory "
                                                   "(default: the user cache dir, imgseal/gate).")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the success cache.")] = False,
    cache_ttl: Annotated[float, typer.Option("--cache-ttl", min=0, help="Seconds a cached success stays valid.")]
    = 3600.0,
    workers: Annotated[int, typer.Option("--workers", min=1, max=64, help="Images verified in parallel.")] = 8,
    namespace: NamespaceOption = None,
    ca_file: CaFileOption = None,
    insecure_registry: InsecureOption = None,
    referrers_mode: ReferrersModeOption = None,
) -> None:
    """Verify every image in Kubernetes manifests against a policy, each distinct image once.

    Finds images in Pod, Deployment, ReplicaSet, StatefulSet, DaemonSet, Job, CronJob (containers,
    initContainers, ephemeralContainers) and Lists. Exit codes: 0 all admitted; 1 any denied;
    2 bad input (an input with no Kubernetes object at all, such as an empty render, included);
    3 could not decide.

    Each object is decided in its metadata.namespace, else in --namespace; when neither says
    and a rule with 'namespaces' could decide, the image is undecidable (exit 3).
    """

    def run() -> int:
        from verifier.gate.cache import DiskCache, default_cache_dir
        from verifier.gate.evaluator import Evaluator
        from verifier.gate.kube import collect_manifests
        from verifier.gate.report import run_gate

        if write and not pin:
            raise UsageError("--write needs --pin")
        items = paths or ["-"]
        if write and "-" in items:
            raise UsageError("--write cannot rewrite stdin; give files")
        pol = _load(policy)
        files = collect_manifests(items)
        if not any(doc is not None for mf in files for doc in mf.documents):
            # An empty render (a failed `helm template`/`kustomize build` piped in) must not pass CI
            # as "every image admitted": there was nothing to check. Objects without images still pass.
            raise InvalidInputError(f"no Kubernetes objects in {', '.join(items)}: nothing to check",
                                    reason="no-objects")
        cache = None if no_cache else DiskCache(cache_dir or default_cache_dir(), cache_ttl)
        stores = store_factory(ca_file, insecure_registry, referrers_mode=referrers_mode)
        evaluator = Evaluator(pol, stores, cache=cache, workers=workers, resolve_tags=pin)
        try:
            report = run_gate(files, evaluator, namespace=namespace)
        finally:
            evaluator.close()
        if pin:
            _pin(report, write)
        _report(report, output, to_stderr=pin and not write)
        return report.exit_code

    code = guarded(run)
    raise typer.Exit(code)


def _pin(report: GateReport, write: bool) -> None:
    from verifier.gate.cache import write_atomic
    from verifier.gate.kube import render_pinned

    for i, mf in enumerate(report.files):
        text, changed = render_pinned(mf, report.verdict_of)
        if write:
            if changed:
                target = Path(mf.path)
                write_atomic(target, text.encode(), mode=target.stat().st_mode & 0o777)
                err(f"pinned {changed} image(s) in {mf.path}")
        else:
            if i and not text.startswith("---"):
                sys.stdout.write("---\n")
            sys.stdout.write(text)
    sys.stdout.flush()


def _report(report: GateReport, fmt: GateFormat, *, to_stderr: bool) -> None:
    from verifier.gate.report import report_json, report_sarif

    if fmt is not GateFormat.text:
        doc = report_json(report) if fmt is GateFormat.json else report_sarif(report)
        if to_stderr:  # --pin prints the manifests on stdout
            err(_dumps(doc))
        else:
            emit_json(doc)
        return
    rows = []
    namespaced = any(ns is not None for ns, _ in report.verdicts)  # a namespace column only when one is known
    for (ns, image), v in report.verdicts.items():
        digest = v.digest.split(":", 1)[1][:12] if v.digest else "-"
        rows.append((v.decision.upper(), *((ns or "-",) if namespaced else ()), image, v.rule or "(default)",
                     digest + (" (cached)" if v.cached else ""), v.message))
    stream = sys.stderr if to_stderr else sys.stdout
    if stream.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(show_lines=False)
        for col in ("decision", *(("namespace",) if namespaced else ()), "image", "rule", "digest", "detail"):
            table.add_column(col, overflow="fold")
        colours = {"ALLOW": "green", "WARN": "yellow", "DENY": "red", "ERROR": "magenta"}
        for row in rows:
            table.add_row(f"[{colours[row[0]]}]{row[0]}[/]", *row[1:])
        Console(file=stream).print(table)
    else:
        for row in rows:
            stream.write("\t".join(row) + "\n")
    counts = {d: sum(1 for v in report.verdicts.values() if v.decision == d) for d in ("allow", "warn", "deny",
                                                                                       "error")}
    summary = ", ".join(f"{n} {d}" for d, n in counts.items() if n)
    stream.write(f"{len(report.verdicts)} distinct image(s): {summary or 'none found'}\n")
    stream.flush()


def _dumps(obj: object) -> str:
    import json

    return json.dumps(obj, indent=2)


def webhook_serve(
    policy: PolicyOption = Path("policy.yaml"),
    tls_cert: Annotated[Path, typer.Option("--tls-cert", help="PEM certificate (chain) to serve; reloaded when it "
                                           "changes.", dir_okay=False)] = Path("tls.crt"),
    tls_key: Annotated[Path, typer.Option("--tls-key", help="PEM private key of --tls-cert.", dir_okay=False)]
    = Path("tls.key"),
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8443,
    host: Annotated[str, typer.Option("--host")] = "0.0.0.0",  # noqa: S104 - a webhook serves the cluster network
    timeout: Annotated[float, typer.Option("--timeout", min=1, max=30, help="The webhook's timeoutSeconds; each "
                                           "request is answered within it (deadline = timeout - 2 s, at least 1 s).")]
    = 10.0,
    workers: Annotated[int, typer.Option("--workers", min=1, max=64, help="Images verified in parallel.")] = 8,
    cache_ttl: Annotated[float, typer.Option("--cache-ttl", min=0, help="Seconds a success stays cached.")] = 3600.0,
    tag_ttl: Annotated[float, typer.Option("--tag-ttl", min=0, help="Seconds a tag's digest is remembered "
                                           "(0: resolve every tag on every request).")] = 5.0,
    reload_interval: Annotated[float, typer.Option("--reload-interval", min=0.1, help="Seconds between checks of "
                                                   "the policy and TLS files for changes.")] = 2.0,
    pull_secrets: Annotated[bool, typer.Option("--pull-secrets/--no-pull-secrets", help="Verify with each Pod's "
                                               "imagePullSecrets and its ServiceAccount's (read from the API "
                                               "server); on by default in a cluster or with --kubeconfig.")] = True,
    kubeconfig: Annotated[Path | None, typer.Option("--kubeconfig", help="Read pull secrets through this kubeconfig "
                                                    "(outside a cluster).", dir_okay=False)] = None,
    serviceaccount_dir: Annotated[Path, typer.Option("--serviceaccount-dir", envvar="IMGSEAL_SERVICEACCOUNT_DIR",
                                                     help="In a cluster: where the token and ca.crt are.",
                                                     file_okay=False)]
    = Path("/var/run/secrets/kubernetes.io/serviceaccount"),
    ca_file: CaFileOption = None,
    insecure_registry: InsecureOption = None,
    referrers_mode: ReferrersModeOption = None,
) -> None:
    """Serve POST /validate and /mutate (AdmissionReview v1) and GET /healthz, /readyz, /metrics over HTTPS.

    One process; the policy and TLS files are reloaded when they change (a ConfigMap update
    included), a policy that does not load keeps the last good one (see /readyz, /metrics).
    """

    def run() -> None:
        import os
        import ssl

        from verifier.gate.cache import MemoryCache, TagCache
        from verifier.gate.evaluator import Evaluator
        from verifier.gate.pull_secrets import KubeSecrets
        from verifier.gate.webhook import Webhook, log, make_server

        for what, path in (("--tls-cert", tls_cert), ("--tls-key", tls_key)):
            if not path.is_file():
                raise UsageError(f"{what} {path}: no such file")
        pol = _load(policy)
        secrets = None
        if pull_secrets and kubeconfig is not None:
            secrets = KubeSecrets.from_kubeconfig(kubeconfig)
        elif pull_secrets and os.environ.get("KUBERNETES_SERVICE_HOST"):
            secrets = KubeSecrets.in_cluster(serviceaccount_dir)
        stores = store_factory(ca_file, insecure_registry, referrers_mode=referrers_mode)
        evaluator = Evaluator(pol, stores, cache=MemoryCache(cache_ttl), workers=workers, resolve_tags=True,
                              tags=TagCache(tag_ttl) if tag_ttl else None)
        deadline = max(1.0, timeout - 2.0)
        hook = Webhook(evaluator, deadline=deadline, policy_path=policy, secrets=secrets,
                       reload_interval=reload_interval)
        try:
            server = make_server(hook, host=host, port=port, cert=tls_cert, key=tls_key)
        except (OSError, ssl.SSLError) as e:
            raise UsageError(f"--tls-cert {tls_cert} / --tls-key {tls_key}: cannot load: {e}") from e
        log("start", host=host, port=port, policy=str(policy), rules=len(pol.rules), deadline=deadline,
            pull_secrets="kubeconfig" if kubeconfig and secrets else "in-cluster" if secrets else False)
        server.run()

    guarded(run)
