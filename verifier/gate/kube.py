"""Images in Kubernetes objects and YAML files, and pinning their tags to digests.

Finding images fails closed: a known kind with a malformed container list, or a container
whose ``image`` is not a string, is an error — an image we failed to see would be an image we
failed to check. Files are read with libyaml (fast) to find images, and with ruamel's
round-trip loader only to write them back with comments kept (``gate --pin --write``).
"""

from __future__ import annotations

import contextlib
import functools
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from imgseal.errors import InvalidInputError, UsageError
from verifier.gate.scope import is_namespace
from verifier.gate.verdict import Verdict

MAX_MANIFEST_FILE_BYTES: Final = 16 << 20


#: Where pod specs live, by kind (Kubernetes API: core/v1 Pod, apps/v1, batch/v1).
POD_SPEC_PATHS: Final[Mapping[str, tuple[str, ...]]] = {
    "Pod": ("spec",),
    "PodTemplate": ("template", "spec"),
    "Deployment": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "ReplicationController": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}


CONTAINER_LISTS: Final = ("containers", "initContainers", "ephemeralContainers")


@dataclass(frozen=True)
class ImageSite:
    """One ``image:`` field: where it is (a JSON pointer into its document) and what it says."""

    image: str
    pointer: str
    kind: str
    name: str
    line: int = 0  # 1-based line in its file, when known
    namespace: str | None = None  # the object's metadata.namespace, when it says


def _escape_pointer(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def find_images(obj: Any, *, where: str = "document") -> list[ImageSite]:
    """Every container image in one Kubernetes object (a List's items included).

    Objects of other kinds have no images and yield nothing; a known kind with a malformed
    container list, or a container whose ``image`` is not a string, is an error — an image we
    failed to see would be an image we failed to check.
    """
    sites: list[ImageSite] = []
    _find(obj, "", where, sites)
    return sites


def _find(obj: Any, prefix: str, where: str, sites: list[ImageSite]) -> None:
    if obj is None:
        return
    if not isinstance(obj, Mapping):
        raise InvalidInputError(f"{where}: a Kubernetes object must be a mapping", reason="invalid-manifest")
    kind = obj.get("kind")
    if not isinstance(kind, str):
        return
    if kind == "List" or (kind.endswith("List") and isinstance(obj.get("items"), list)):
        items = obj.get("items") or []
        if not isinstance(items, list):
            raise InvalidInputError(f"{where}: {kind}.items is not a list", reason="invalid-manifest")
        for i, item in enumerate(items):
            _find(item, f"{prefix}/items/{i}", f"{where} items[{i}]", sites)
        return
    path = POD_SPEC_PATHS.get(kind)
    if path is None:
        return
    metadata = obj.get("metadata")
    name = str(metadata.get("name", "")) if isinstance(metadata, Mapping) else ""
    namespace = metadata.get("namespace") if isinstance(metadata, Mapping) else None
    if namespace is not None and not (isinstance(namespace, str) and is_namespace(namespace)):
        # Rules may depend on the namespace: one we cannot read is not one we may ignore.
        raise InvalidInputError(f"{where}: {kind} {name}: metadata.namespace {namespace!r} is not a namespace name",
                                reason="invalid-manifest")
    spec: Any = obj
    for step in path:
        spec = spec.get(step) if isinstance(spec, Mapping) else None
        if spec is None:
            return  # a workload without a template (e.g. a partial patch) has no images to check
    if not isinstance(spec, Mapping):
        raise InvalidInputError(f"{where}: {kind} {name}: {'.'.join(path)} is not a mapping", reason="invalid-manifest")
    spec_pointer = prefix + "".join(f"/{step}" for step in path)
    for list_name in CONTAINER_LISTS:
        containers = spec.get(list_name)
        if containers is None:
            continue
        if not isinstance(containers, list):
            raise InvalidInputError(f"{where}: {kind} {name}: {list_name} is not a list", reason="invalid-manifest")
        for i, container in enumerate(containers):
            image = container.get("image") if isinstance(container, Mapping) else None
            if not isinstance(image, str) or not image:
                raise InvalidInputError(f"{where}: {kind} {name}: {list_name}[{i}] has no image string",
                                        reason="invalid-manifest")
            line = 0
            if isinstance(container, _LineDict):
                line = container.value_lines.get("image", -1) + 1
            else:
                lc = getattr(container, "lc", None)
                if lc is not None:
                    with contextlib.suppress(KeyError, TypeError, AttributeError):
                        line = int(lc.value("image")[0]) + 1
            sites.append(ImageSite(image, f"{spec_pointer}/{list_name}/{i}/image", kind, name, line, namespace))


@dataclass
class ManifestFile:
    """A YAML stream and the images in it.

    ``round_trip`` tells how ``documents`` were read: ruamel's round-trip loader (so they
    can be written back with comments, for ``--pin``), or the fast loader (PyYAML's libyaml
    parser), which is enough to find images. :func:`render_pinned` re-reads a fast-loaded
    file in round-trip form when it needs to.
    """

    path: str  # "-" for stdin
    text: str
    documents: list[Any]
    sites: list[list[ImageSite]] = field(default_factory=list)  # per document
    round_trip: bool = True


class _LineDict(dict[Any, Any]):
    """A mapping from the fast loader that remembers the 0-based line of each value (for reports)."""

    value_lines: dict[Any, int]


@functools.cache
def _fast_loader() -> Any:
    """A PyYAML SafeLoader on libyaml (``CSafeLoader``) whose mappings record value lines.

    Reading 100 Deployments with ruamel's pure-Python round-trip loader takes ~0.6 s, most of
    a warm gate run; libyaml parses the same in a few milliseconds. Two differences from the
    round-trip loader are closed here or fail closed: duplicate keys are refused (as ruamel
    and kubectl's strict decoding do: the API server must not see another ``image`` than we
    checked), and YAML 1.1 scalars such as ``1:20`` (sexagesimal) become numbers, so such an
    ``image`` is refused as "no image string" rather than checked as something else.
    """
    import yaml

    base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class Loader(base):  # type: ignore[misc]
        pass

    def construct_map(loader: Any, node: yaml.MappingNode) -> Iterator[_LineDict]:
        data = _LineDict()
        data.value_lines = {}
        yield data
        loader.flatten_mapping(node)
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=False)
            try:
                hash(key)
            except TypeError as e:
                raise yaml.constructor.ConstructorError(None, None, "unhashable mapping key",
                                                        key_node.start_mark) from e
            if key in data:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {str(key)[:60]!r}",
                                                        key_node.start_mark)
            data[key] = loader.construct_object(value_node, deep=False)
            data.value_lines[key] = value_node.start_mark.line

    Loader.add_constructor("tag:yaml.org,2002:map", construct_map)
    return Loader


def _yaml_rt() -> Any:
    from ruamel.yaml import YAML

    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.width = 4096  # never re-wrap long lines
    return y


def _load_fast(path: str, text: str) -> list[Any]:
    import yaml

    try:
        return list(yaml.load_all(text, Loader=_fast_loader()))  # a SafeLoader subclass
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f"{path}:{mark.line + 1}" if mark is not None else path
        raise InvalidInputError(f"{where}: not valid YAML: {e.problem or e.context}", reason="invalid-manifest") from e
    except (yaml.YAMLError, RecursionError) as e:
        raise InvalidInputError(f"{path}: not valid YAML: {str(e).splitlines()[0] if str(e) else type(e).__name__}",
                                reason="invalid-manifest") from e


def _load_round_trip(path: str, text: str) -> list[Any]:
    from ruamel.yaml.error import YAMLError

    try:
        return list(_yaml_rt().load_all(text))
    except YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else path
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise InvalidInputError(f"{where}: not valid YAML: {problem}", reason="invalid-manifest") from e


def read_manifest(path: str, text: str, *, round_trip: bool = False) -> ManifestFile:
    """Parse one YAML stream and find its images; ``round_trip`` keeps comments for writing back."""
    documents = _load_round_trip(path, text) if round_trip else _load_fast(path, text)
    mf = ManifestFile(path, text, documents, round_trip=round_trip)
    mf.sites = [find_images(doc, where=f"{path} document {i + 1}") for i, doc in enumerate(documents)]
    return mf


def collect_manifests(paths: Sequence[str], stdin: Callable[[], str] | None = None, *,
                      round_trip: bool = False) -> list[ManifestFile]:
    """Read files, directories (``*.yaml``, ``*.yml``, ``*.json``, recursively, sorted) and ``-`` (stdin)."""
    files: list[ManifestFile] = []
    for given in paths:
        if given == "-":
            files.append(read_manifest("-", (stdin or sys.stdin.read)(), round_trip=round_trip))
            continue
        p = Path(given)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in (".yaml", ".yml", ".json"))
            if not found:
                raise UsageError(f"{given}: no .yaml, .yml or .json files in this directory")
            candidates = found
        elif p.is_file():
            candidates = [p]
        else:
            raise UsageError(f"{given}: no such file or directory")
        for f in candidates:
            if f.stat().st_size > MAX_MANIFEST_FILE_BYTES:
                raise InvalidInputError(f"{f}: over the {MAX_MANIFEST_FILE_BYTES}-byte limit for a manifest file")
            try:
                text = f.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise InvalidInputError(f"cannot read {f}: {e}", reason="invalid-manifest") from e
            files.append(read_manifest(str(f), text, round_trip=round_trip))
    return files


def pinned_image(image: str, verdict: Verdict) -> str | None:
    """``repo:tag@sha256:…`` for an admitted tag reference (the text as written, plus the digest)."""
    if not verdict.admitted or verdict.digest is None or "@" in image:
        return None
    return f"{image}@{verdict.digest}"


_SEQ_INDENT = re.compile(r"^( *)[A-Za-z_][\w.-]*:\s*\n( *)- ", re.MULTILINE)


def render_pinned(mf: ManifestFile, verdict_of: Callable[[ImageSite], Verdict]) -> tuple[str, int]:
    """The file with admitted tag references pinned (ruamel round-trip: comments kept); and how many changed.

    ``verdict_of`` gives each site's verdict (the same image may be decided differently in two
    namespaces).
    """
    import io

    if not mf.round_trip:
        # Read again, keeping comments; both readers must find the same images at the same
        # places, or the file is ambiguous and is not rewritten.
        again = read_manifest(mf.path, mf.text, round_trip=True)
        if [[(s.pointer, s.image) for s in d] for d in again.sites] != \
                [[(s.pointer, s.image) for s in d] for d in mf.sites]:
            raise InvalidInputError(f"{mf.path}: YAML readers disagree about its images; not pinning it",
                                    reason="invalid-manifest")
        mf = again
    changed = 0
    for doc, sites in zip(mf.documents, mf.sites, strict=True):
        for site in sites:
            new = pinned_image(site.image, verdict_of(site))
            if new is None:
                continue
            container, key = _resolve_pointer(doc, site.pointer)
            old = container[key]
            container[key] = type(old)(new) if isinstance(old, str) and type(old) is not str else new
            changed += 1
    y = _yaml_rt()
    m = _SEQ_INDENT.search(mf.text)
    if m:  # keep the file's own list style: "- " under or indented from its key
        offset = max(0, len(m.group(2)) - len(m.group(1)))
        y.indent(mapping=2, sequence=offset + 2, offset=offset)
    if mf.text.lstrip().startswith("---"):
        y.explicit_start = True
    buf = io.StringIO()
    y.dump_all(mf.documents, buf)
    return buf.getvalue(), changed


def _resolve_pointer(doc: Any, pointer: str) -> tuple[Any, Any]:
    tokens = [t.replace("~1", "/").replace("~0", "~") for t in pointer.split("/")[1:]]
    node = doc
    for token in tokens[:-1]:
        node = node[int(token)] if isinstance(node, list) else node[token]
    last = tokens[-1]
    return node, (int(last) if isinstance(node, list) else last)
